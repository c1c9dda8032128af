"""The `satlink` command: the user's test bench and its error handling."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from satlink.cli import main

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "small.png"
    Image.fromarray(data.coffee()[100:228, 200:392]).save(path)  # 192×128
    return path


def test_encode_writes_fixed_size_numbered_files(image_path, tmp_path, capsys):
    assert main(["encode", str(image_path), "--out", str(tmp_path / "p")]) == 0
    files = sorted((tmp_path / "p").glob("packet_*"))
    assert [f.name for f in files] == [f"packet_{i:05d}.bin" for i in range(len(files))]
    assert {f.stat().st_size for f in files} == {360}
    out = capsys.readouterr().out
    assert f"wrote {len(files)} packets" in out
    # 192 x 128 px: 96 indices a stage, 274 a packet: stages end in packets 1, 1, 2, 2, 2
    assert "stages 1-5 complete after packets 1, 1, 2, 2, 2" in out and len(files) == 2
    # the rest is the folder's bookkeeping (the manifest and lock of satlink.outdir)
    others = {f.name for f in (tmp_path / "p").iterdir()} - {f.name for f in files}
    assert others == {".satlink-run.json", ".satlink.lock"}


def test_decode_reports_missing_and_corrupt_and_still_writes(image_path, tmp_path, capsys):
    pdir = tmp_path / "p"
    main(["encode", str(image_path), "--out", str(pdir), "--packet-size", "120"])
    files = sorted(pdir.glob("packet_*"))
    files[-1].unlink()
    blob = bytearray(files[1].read_bytes())
    blob[30] ^= 0x04
    files[1].write_bytes(bytes(blob))
    (pdir / "junk.bin").write_bytes(b"not a packet")
    capsys.readouterr()
    out_png = tmp_path / "preview.png"
    assert main(["decode", str(pdir), "--out", str(out_png)]) == 0
    text = capsys.readouterr().out
    assert f"accepted {len(files) - 2} of {len(files)} packets, rejected 2, missing 2" in text
    assert "CRC" in text
    assert Image.open(out_png).size == (192, 128)


def test_decode_of_empty_folder_is_one_clear_line(tmp_path, capsys):
    assert main(["decode", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("satlink: error: no packet files") and err.count("\n") == 1


def test_replay_bad_inputs_exit_nonzero_with_one_line(image_path, tmp_path, capsys):
    cases = [
        ["replay", "--image", str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")],
        ["replay", "no-such-scenario", "--out", str(tmp_path / "o")],
        ["replay", "--set", "channel.loss.p=1.5", "--out", str(tmp_path / "o")],
        ["replay", "--image", str(image_path), "--out", str(image_path / "sub")],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("satlink: error: ") and err.count("\n") == 1, err
        assert "Traceback" not in err


def test_replay_cli_writes_the_folder(image_path, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "replay",
                "--image",
                str(image_path),
                "--out",
                str(out),
                "--quiet",
                "--set",
                "channel.loss.model='none'",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "final MS-SSIM" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["lost"] == 0
    assert summary["scenario"] == "bds3-rsmc-geo"
    assert summary["overrides"] == ["channel.loss.model='none'"]
    assert summary["scenario_config"]["scenario"]["overrides"] == summary["overrides"]


def test_budget_json_has_the_documented_keys(capsys):
    assert main(["budget", "bds3-rsmc-geo", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["scenario"] == "bds3-rsmc-geo" and doc["over_pass"] is False
    (budget,) = doc["steps"]
    for key in (
        "freq_hz",
        "slant_range_km",
        "fspl_db",
        "eirp_dbw",
        "losses_db",
        "gt_dbk",
        "cn0_dbhz",
        "rate_bps",
        "ebn0_db",
        "required_ebn0_db",
        "margin_db",
        "ber",
        "packet_bits",
        "per",
    ):
        assert key in budget, key
    assert main(["budget", "leo-pass-budget", "--json"]) == 0
    over_pass = json.loads(capsys.readouterr().out)
    assert over_pass.keys() == doc.keys()  # one shape for every scenario
    assert over_pass["scenario"] == "leo-pass-budget" and over_pass["over_pass"] is True
    assert len(over_pass["steps"]) > 2 and over_pass["steps"][0].keys() == budget.keys()


def test_scenarios_lists_presets(capsys):
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    for name in (
        "bds3-rsmc-geo",
        "bds3-gsmc-meo",
        "iridium-sbd",
        "leo-pass-budget",
        "geo-burst-arq",
    ):
        assert name in out


def test_console_script_debug_shows_traceback(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "satlink.cli",
        "--debug",
        "decode",
        str(tmp_path),
        "--out",
        str(tmp_path / "x.png"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_codec_train_cli_runs_the_tiny_model(tmp_path):
    data_dir = tmp_path / "imgs"
    data_dir.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(
            data_dir / f"{i}.png"
        )
    run = tmp_path / "run"
    argv = [
        "codec",
        "train",
        "--data",
        str(data_dir),
        "--out",
        str(run),
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--crop-px",
        "64",
        "--config",
        "tiny",
        "--kmeans-batches",
        "1",
        "--progress",
        "false",
        "--threads",
        "1",
    ]
    assert main(argv) == 0
    assert (run / "last.ckpt").is_file()
    assert "val_msssim" in (run / "log.jsonl").read_text()


def test_model_choice_by_id_name_or_file_and_one_line_for_unknown(image_path, tmp_path, capsys):
    from codec.zoo import DEFAULT_MODEL, MODELS, weights_path
    from satlink.packets import parse_packet

    oldest = min(MODELS)
    for ref in (str(oldest), MODELS[oldest], str(weights_path(oldest))):
        out = tmp_path / ref.replace("/", "_")
        assert main(["encode", str(image_path), "--out", str(out), "--model", ref]) == 0
        assert parse_packet((out / "packet_00000.bin").read_bytes()).model_id == oldest
    capsys.readouterr()
    for ref, why in (("77", "unknown model id 77"), ("0", "model id 0 marks weights that are not")):
        assert main(["encode", str(image_path), "--out", str(tmp_path / "x"), "--model", ref]) == 2
        err = capsys.readouterr().err
        assert why in err and err.count("\n") == 1
    assert main(["codec", "models"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in MODELS.values())
    from codec.zoo import RETIRED

    for model_id, (name, commit) in RETIRED.items():
        assert f"{model_id:>3}  {name:<16} retired: in git at {commit}" in listing
    assert f"{DEFAULT_MODEL}" in next(line for line in listing.splitlines() if "(default)" in line)
