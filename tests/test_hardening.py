"""Issue 15: no user file lost, one run per folder, bounded memory, one clear line for bad input.

Real faults where the fault is real: a second process holding the folder, a SIGINT to a child
process, a full (tmpfs) file system when this machine lets the test mount one.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
import weakref
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

import codec
from satlink import report
from satlink.cli import main
from satlink.outdir import LOCK_NAME, MANIFEST_NAME, OutputFolder, OutputFolderError
from satlink.receiver import decode_files
from satlink.replay import REPLAY_FILES, PreviewLimitError, replay
from satlink.report import replay_files
from satlink.scenario import ScenarioError, load_scenario

torch.set_num_threads(1)

NO_LOSS = ("channel.loss.model='none'",)
# 66 indices a 100-byte packet: the 128 x 128 test picture's 320 indices take 5 packets.
FIVE_PACKETS = (*NO_LOSS, "packets.size_bytes=100")
ROOT = Path(__file__).resolve().parents[1]


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _previews_on_disk(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / "previews").glob("*.png"))


@pytest.fixture(scope="module")
def big_png(tmp_path_factory) -> Path:
    """384×384 photo crop: 160 packets of 40 bytes, a run slow enough to interrupt."""
    path = tmp_path_factory.mktemp("img") / "crop.png"
    Image.fromarray(np.ascontiguousarray(data.astronaut()[:384, :384])).save(path)
    return path


# -- item 2: output folders ----------------------------------------------------------------------


def test_a_folder_of_user_files_is_refused_and_left_untouched(small_image, tmp_path):
    out = tmp_path / "mine"
    (out / "previews").mkdir(parents=True)
    (out / "notes.txt").write_text("my notes")
    (out / "summary.json").write_text('{"mine": true}')
    (out / "previews" / "001.png").write_bytes(b"my own picture")
    before = _tree(out)
    with pytest.raises(OutputFolderError, match=r"no satlink run wrote.*choose a new or empty"):
        replay("bds3-rsmc-geo", small_image, out_dir=out, overrides=NO_LOSS)
    assert _tree(out) == before
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "previews", "summary.json"]


def test_a_rerun_replaces_only_what_satlink_wrote(small_image, tmp_path):
    out = tmp_path / "run"
    many = replay(
        "bds3-rsmc-geo", small_image, out_dir=out, overrides=[*NO_LOSS, "packets.size_bytes=40"]
    )
    assert len(_previews_on_disk(out)) == len(many.previews) > 5
    (out / "notes.txt").write_text("added by the user")
    (out / "previews" / "favourite.png").write_bytes(b"user's")
    few = replay("bds3-rsmc-geo", small_image, out_dir=out, overrides=NO_LOSS)
    # The earlier run's extra previews are gone (no mix), the user's files are not.
    assert _previews_on_disk(out) == [
        *(f"{p.number:03d}.png" for p in few.previews),
        "favourite.png",
    ]
    assert (out / "notes.txt").read_text() == "added by the user"
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["state"] == "complete"
    assert "notes.txt" not in manifest["files"] and "summary.json" in manifest["files"]
    # Streamed previews read back from disk: the same pixels as the codec's full decode.
    model = codec.default_codec()
    np.testing.assert_array_equal(few.previews[-1].image, model.decode(model.encode(small_image)))


def test_a_file_changed_since_satlink_wrote_it_is_not_overwritten(small_image, tmp_path):
    out = tmp_path / "run"
    replay("bds3-rsmc-geo", small_image, out_dir=out, overrides=NO_LOSS)
    (out / "summary.json").write_text('{"edited": "by hand"}')
    before = _tree(out)
    with pytest.raises(OutputFolderError, match=r"summary\.json was changed after satlink"):
        replay("bds3-rsmc-geo", small_image, out_dir=out, overrides=NO_LOSS)
    assert _tree(out) == before


def test_every_file_a_replay_writes_is_declared(small_image, tmp_path):
    """Files are checked against the user's up front by name: a new writer must be listed."""
    replay("bds3-rsmc-geo", small_image, out_dir=tmp_path / "o", overrides=NO_LOSS)
    written = {
        p.relative_to(tmp_path / "o").as_posix()
        for p in (tmp_path / "o").rglob("*")
        if p.is_file() and p.parent.name != "previews"
    }
    assert written - {MANIFEST_NAME, LOCK_NAME} <= set(REPLAY_FILES)


def test_a_second_concurrent_run_is_refused(small_image, tmp_path):
    """A real second process holds the folder; when it dies (SIGKILL), the lock goes with it."""
    out = tmp_path / "shared"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from satlink.outdir import OutputFolder; "
            "OutputFolder(sys.argv[1]).claim(); print('claimed', flush=True); time.sleep(120)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "claimed"
        with pytest.raises(
            OutputFolderError, match=rf"in use by another satlink run \(pid {holder.pid}\)"
        ):
            replay("bds3-rsmc-geo", small_image, out_dir=out, overrides=NO_LOSS)
        assert not (out / "previews").exists()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    res = replay("bds3-rsmc-geo", small_image, out_dir=out, overrides=NO_LOSS)
    assert len(_previews_on_disk(out)) == len(res.previews)


def test_two_replays_started_together_never_mix(tmp_path):
    """The issue's race: two `satlink replay` processes into one folder at once. One is refused
    (exit 2, one line) while the other runs; whichever wins, the folder is one run's."""
    out, image = tmp_path / "race", tmp_path / "small.png"
    Image.fromarray(np.ascontiguousarray(data.astronaut()[64:192, 160:288])).save(image)
    cmd = [
        sys.executable, "-m", "satlink.cli", "replay", "--image", str(image), "--out", str(out),
        "--quiet", "--set", "channel.loss.model='none'", "--set", "packets.size_bytes=40",
    ]  # fmt: skip
    runs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(r.wait(timeout=600), r.stderr.read()) for r in runs]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 0], [0, 2]), results
    for code, err in results:
        if code == 2:
            assert "in use by another satlink run" in err and err.count("\n") == 1
    summary = json.loads((out / "summary.json").read_text())
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    frames = _previews_on_disk(out)
    assert summary["previews"] == len(frames) and manifest["state"] == "complete"
    assert {f"previews/{f}" for f in frames} == {k for k in manifest["files"] if "/" in k}


def test_two_processes_writing_one_file_never_fail_or_mix(tmp_path):
    """Real concurrent writers of one path through report.atomic_write (unique temporaries)."""
    target = tmp_path / "summary.json"
    script = (
        "import sys; from satlink.report import atomic_write\n"
        "for _ in range(300): atomic_write(sys.argv[1], sys.argv[2].encode() * 5000)\n"
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(target), tag], stderr=subprocess.PIPE)
        for tag in ("A", "B")
    ]
    seen = set()
    while any(w.poll() is None for w in writers):
        with contextlib.suppress(FileNotFoundError):
            seen.add(target.read_bytes())
    assert [w.wait() for w in writers] == [0, 0], [w.stderr.read() for w in writers]
    seen.add(target.read_bytes())
    assert seen <= {b"A" * 5000, b"B" * 5000}
    assert not list(tmp_path.glob(".*.tmp"))


def test_sigint_to_a_child_run_leaves_a_consistent_folder(big_png, tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "satlink.cli", "replay", "--image", str(big_png), "--out", str(out),
        "--quiet", "--set", "channel.loss.model='none'", "--set", "packets.size_bytes=40",
    ]  # fmt: skip
    child = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal, even when this test runs where SIGINT is ignored (a background job)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not (out / "previews" / "005.png").exists():
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.05)
    t_signal = time.monotonic()
    child.send_signal(signal.SIGINT)
    stdout, stderr = child.communicate(timeout=60)
    after_signal_s = time.monotonic() - t_signal
    assert child.returncode == 130, stderr
    assert "Traceback" not in stderr and "INTERRUPTED" in stdout
    assert after_signal_s < 30, after_signal_s  # figures of a bounded number of frames
    summary = json.loads((out / "summary.json").read_text())
    frames = _previews_on_disk(out)
    assert summary["interrupted"] is True
    assert summary["previews"] == len(frames) >= 5
    assert frames == [f"{i:03d}.png" for i in range(1, len(frames) + 1)]
    assert summary["previews"] < 160  # it really stopped early
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["state"] == "interrupted"
    assert {f"previews/{f}" for f in frames} <= set(manifest["files"])
    assert not list(out.rglob("*.tmp"))
    OutputFolder(out).claim().release()  # the lock went with the process


@pytest.mark.parametrize("moment", ["before-write", "after-write"])
def test_ctrl_c_while_a_preview_is_written_never_counts_a_missing_png(
    small_image, tmp_path, monkeypatch, moment
):
    real, calls = replay_files.save_png, []

    def interrupted_save(path, image):
        calls.append(path)
        if len(calls) == 3 and moment == "before-write":
            raise KeyboardInterrupt
        real(path, image)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(replay_files, "save_png", interrupted_save)
    res = replay("bds3-rsmc-geo", small_image, out_dir=tmp_path, overrides=FIVE_PACKETS)
    summary = json.loads((tmp_path / "summary.json").read_text())
    frames = _previews_on_disk(tmp_path)
    assert res.interrupted and summary["previews"] == len(frames) == len(res.previews)
    assert len(frames) == (2 if moment == "before-write" else 3)
    rows_with_preview = [r for r in res.rows if r["preview"] != ""]
    assert len(rows_with_preview) == len(frames)


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if sys.platform != "linux" or os.geteuid() != 0:
        return False
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        timeout=30,
    )
    return proc.returncode == 0


def test_a_full_disk_names_the_file_keeps_a_summary_and_no_temporaries(big_png, tmp_path, capsys):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "1m"):
        pytest.skip("cannot mount a small tmpfs here (needs Linux and root)")
    try:
        out = disk / "run"
        argv = [
            "replay", "--image", str(big_png), "--out", str(out), "--quiet",
            "--set", "channel.loss.model='none'", "--set", "packets.size_bytes=40",
        ]  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert "No space left on device" in err and "/previews/" in err and ".png" in err
        assert not list(out.rglob("*.tmp"))
        summary = json.loads((out / "summary.json").read_text())
        assert summary["previews"] == len(_previews_on_disk(out)) > 0
        assert summary["interrupted"] is True and "No space left" in summary["stopped_by"]
    finally:
        subprocess.run(["umount", str(disk)], check=False, timeout=30)


# -- item 3: bounded memory ----------------------------------------------------------------------


def test_a_plan_over_the_preview_limit_is_refused_up_front(small_image, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(PreviewLimitError, match=r"up to \d+ previews.*--max-previews"):
        replay(
            "bds3-rsmc-geo",
            small_image,
            out_dir=out,
            overrides=["packets.size_bytes=19"],
            max_previews=50,
        )
    assert not out.exists()


def test_the_19_byte_plan_is_refused_in_one_line_by_the_cli(tmp_path):
    """The issue's case: the default image in 19-byte packets (5,120 previews)."""
    cmd = [
        sys.executable, "-m", "satlink.cli", "replay", "--quiet", "--out", str(tmp_path / "o"),
        "--set", "packets.size_bytes=19", "--set", "channel.min_interval_s=0",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--max-previews" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_streamed_previews_do_not_stay_in_memory(small_image, tmp_path):
    """Every decoded preview is watched (weak references): after a replay into a folder none
    is still held, however many there were; asked to keep them, all are."""
    model = codec.default_codec()

    class Watched:
        def __init__(self):
            self.images = []

        def __getattr__(self, name):
            return getattr(model, name)

        def decode(self, code, received=None):
            image = model.decode(code, received)
            self.images.append(weakref.ref(image))
            return image

    def alive(**kw) -> tuple[int, int]:
        watched = Watched()
        overrides = [*NO_LOSS, "packets.size_bytes=40"]
        res = replay("bds3-rsmc-geo", small_image, codec=watched, overrides=overrides, **kw)
        gc.collect()
        assert len(res.previews) == len(watched.images) >= 10
        return sum(ref() is not None for ref in watched.images), len(watched.images)

    assert alive(out_dir=tmp_path / "a")[0] == 0
    kept, n = alive(out_dir=tmp_path / "b", keep_images=True)
    assert kept == n


def test_report_frames_are_bounded(small_image, tmp_path, monkeypatch):
    """The stream keeps a small frame per preview for the report only up to MAX_FRAMES
    previews; past that it drops them all (the report reads its picks back), and the report's
    pictures are the same either way."""
    from satlink.report import replay_files

    overrides = [*NO_LOSS, "packets.size_bytes=40"]
    full = replay("bds3-rsmc-geo", small_image, overrides=overrides, out_dir=tmp_path / "a")
    assert all(p.frame is not None for p in full.previews)
    monkeypatch.setattr(replay_files, "MAX_FRAMES", 5)
    few = replay("bds3-rsmc-geo", small_image, overrides=overrides, out_dir=tmp_path / "b")
    assert len(few.previews) > 5 and all(p.frame is None for p in few.previews)
    picked = [f for f in replay_files.preview_images(few) if f is not None]
    assert len(picked) == 5
    assert np.array_equal(picked[-1], replay_files.preview_images(full)[-1])


# -- item 4: one line, exit 2, quickly -----------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", "--lpips-weights", "/nonexistent.pth", "--quiet"],
        ["sweep", "--scheduler", "foo bar", "--seeds", "1"],
    ],
)
def test_bad_flags_get_one_line_and_exit_2_within_5_s(argv, tmp_path):
    cmd = [sys.executable, "-m", "satlink.cli", *argv, "--out", str(tmp_path / "o")]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("satlink: error: ") and proc.stderr.count("\n") == 1
    assert argv[1] in proc.stderr  # names the flag at fault
    assert elapsed < 5, elapsed
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("kind", ["evil", "empty", "text"])
def test_codec_eval_with_a_bad_model_file_is_one_line(kind, tmp_path, capsys):
    model = tmp_path / f"{kind}.pt"
    marker = tmp_path / "ran"
    if kind == "evil":
        payload = type("E", (), {"__reduce__": lambda s: (os.system, (f"touch {marker}",))})
        torch.save({"model": payload()}, model)
    else:
        model.write_bytes(b"" if kind == "empty" else b"hello\n")
    (tmp_path / "data").mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "data" / "a.png")
    argv = ["codec", "eval", "--model", str(model), "--data", str(tmp_path / "data")]
    assert main([*argv, "--out", str(tmp_path / "r.json"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"satlink: error: {model}") and err.count("\n") == 1
    assert not marker.exists()


def test_usage_errors_name_the_flag_in_one_line(capsys):
    assert main(["replay", "--seed", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --seed" in err and "-1" in err


# -- items 6 and 7: non-finite and late errors ---------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["channel.rate_bps=1e-320"], r"channel.rate_bps = 1e-320: one 360-byte message"),
        (
            [
                "channel.visibility.mode='periodic'",
                "channel.visibility.period_s=6000.0",
                "channel.visibility.duration_s=600.0",
                "channel.visibility.first_start_s=1e20",
            ],
            r"first_start_s = 1e\+20 is beyond the simulation horizon",
        ),
        (
            ["channel.visibility.mode='windows'", "channel.visibility.windows_s=[[0.0, 0.5]]"],
            r"preset bds3-rsmc-geo.*longer than the longest visibility window \(0.5 s\)",
        ),
        (["scenario.origin='x'"], r"scenario.origin is recorded by satlink"),
    ],
)
def test_scenarios_that_cannot_run_are_refused_at_load(overrides, message):
    with pytest.raises(ScenarioError, match=message):
        load_scenario("bds3-rsmc-geo", overrides=overrides)


def test_json_files_are_always_valid_json(tmp_path):
    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))

    report.write_json(tmp_path / "s.json", {"t_s": float("inf"), "x": [float("nan"), 1.0]})
    assert strict((tmp_path / "s.json").read_text()) == {"t_s": None, "x": [None, 1.0]}


def test_a_write_that_fails_names_the_file(tmp_path, monkeypatch):
    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError, match="No space left") as info:
        report.write_json(tmp_path / "summary.json", {})
    assert info.value.filename == str(tmp_path / "summary.json")
    assert list(tmp_path.iterdir()) == []


# -- item 8: weaker spots ------------------------------------------------------------------------


def _png_declaring(path: Path, width: int, height: int) -> None:
    """A real small PNG whose header claims another size (the pixel data is not there)."""
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path)
    blob = bytearray(path.read_bytes())
    blob[16:24] = struct.pack(">II", width, height)
    blob[29:33] = struct.pack(">I", zlib.crc32(bytes(blob[12:29])))
    path.write_bytes(bytes(blob))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # PIL, at open
def test_the_pixel_limit_is_checked_from_the_header(tmp_path):
    path = tmp_path / "huge.png"
    _png_declaring(path, 12000, 12000)
    model = codec.default_codec()
    for call in (
        lambda: codec.load_image(path, max_pixels=model.max_pixels),
        lambda: model.encode(path),
        lambda: replay("bds3-rsmc-geo", path, out_dir=tmp_path / "o"),
    ):
        with pytest.raises(codec.CodecInputError, match=r"12000×12000 .*header.*not decoded"):
            call()
    assert not (tmp_path / "o").exists()


def test_decode_never_reads_a_stray_huge_file(small_image, tmp_path):
    from satlink.packets import encode_to_files

    pdir = tmp_path / "p"
    encode_to_files(codec.default_codec().encode(small_image), pdir)
    with open(pdir / "zz_stray.bin", "wb") as f:  # sparse: no disk used
        f.truncate(300 << 20)
    tracemalloc.start()
    try:
        rep = decode_files(pdir, tmp_path / "x.png")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "larger than any packet" in rep.rejected["zz_stray.bin"]
    assert peak < 50 << 20, peak


def test_sweep_workers_are_capped_to_the_cores(small_image, monkeypatch):
    from satlink.sweep import core
    from satlink.sweep.runners import InlineRunner

    asked = []

    class Recording(InlineRunner):
        def __init__(self, workers, model, fingerprint):
            asked.append(workers)

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(core, "PoolRunner", Recording)
    res = core.sweep("bds3-rsmc-geo", seeds=6, images=small_image, workers=8, plots=False)
    assert asked == [2] and res.stats["workers"] == 2


def test_weights_with_nan_are_refused_by_name(tmp_path):
    from codec import CodecConfig, ProgressiveCodec
    from codec.zoo import ModelNotFoundError, load_codec

    torch.manual_seed(0)
    net = ProgressiveCodec(CodecConfig.tiny())
    state = net.state_dict()
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].clone().fill_(float("nan"))
    path = tmp_path / "nan.pt"
    blob = {"config": CodecConfig.tiny().to_dict(), "state_dict": state, "model_id": 7}
    torch.save({**blob, "name": "nan"}, path)
    with pytest.raises(ModelNotFoundError, match=rf"{name}.*NaN"):
        load_codec(path)


def test_output_folder_refusal_writes_nothing_even_under_the_lock(tmp_path):
    """The check runs again under the lock; a refused folder gets no lock file left behind."""
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "a.txt").write_text("x")
    with pytest.raises(OutputFolderError):
        OutputFolder(tmp_path / "f").claim()
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["a.txt"]


def test_a_tampered_manifest_cannot_reach_outside_the_folder(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    st = victim.stat()
    out = tmp_path / "out"
    out.mkdir()
    stamp = {"size_bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    manifest = {"tool": "satlink", "files": {"../victim.txt": stamp, str(victim): stamp}}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    folder = OutputFolder(out).claim()
    assert folder.finish("complete") == []
    folder.release()
    assert victim.read_text() == "keep me"


def test_a_sweep_into_a_folder_of_user_files_is_refused(small_image, tmp_path):
    from satlink.sweep import sweep

    (tmp_path / "results.csv").write_text("mine")
    with pytest.raises(OutputFolderError, match="no satlink run wrote"):
        sweep("bds3-rsmc-geo", seeds=1, images=small_image, workers=0, out_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]
    assert (tmp_path / "results.csv").read_text() == "mine"


def test_encode_owns_its_packet_folder(small_image, tmp_path, capsys):
    """`satlink encode --out` writes through the manifest: a folder of the user's files is
    refused in one line (exit 2) and left as it was; a rerun in larger packets leaves none of
    the first run's extra packets behind to be mixed into a decode."""
    from satlink.cli import main

    png = tmp_path / "small.png"
    Image.fromarray(small_image).save(png)
    small_image = png
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "packet_00000.bin").write_bytes(b"my own")
    assert main(["encode", str(small_image), "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no satlink run wrote" in err
    assert _tree(mine) == {"packet_00000.bin": b"my own"}

    out = tmp_path / "packets"
    assert main(["encode", str(small_image), "--out", str(out), "--packet-size", "60"]) == 0
    many = sorted(p.name for p in out.glob("packet_*.bin"))
    assert main(["encode", str(small_image), "--out", str(out), "--packet-size", "360"]) == 0
    few = sorted(p.name for p in out.glob("packet_*.bin"))
    assert len(many) > len(few) and few == many[: len(few)]
    assert json.loads((out / MANIFEST_NAME).read_text())["kind"] == "encode"


def test_compare_refuses_a_folder_of_user_files_before_any_replay(small_image, tmp_path):
    from satlink.compare import compare

    (tmp_path / "compare.csv").write_text("mine")
    t0 = time.perf_counter()
    with pytest.raises(OutputFolderError, match="no satlink run wrote"):
        compare("bds3-rsmc-geo", small_image, seeds=50, out_dir=tmp_path)
    assert time.perf_counter() - t0 < 5
    assert _tree(tmp_path) == {"compare.csv": b"mine"}
