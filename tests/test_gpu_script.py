"""tools/gpu_train.sh, rehearsed on the CPU: a lent GPU gives one try, so the script's plumbing
(two runs side by side, the average, what comes back within the device's eight files) is
checked here with a tiny model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec.checkpoint import load_weights
from codec.pack import build_pack

ROOT = Path(__file__).resolve().parents[1]
TINY = (
    '{"num_stages":3,"codebook_size":16,"latent_dim":8,"enc_channels":[8,12,16],'
    '"enc_depths":[1,1,1],"dec_channels":[16,12,8,8],"dec_depths":[1,1,1,1],"attn_heads":2,'
    '"latent_norm":true}'
)


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = np.random.default_rng(3)
    for i in range(6):
        img = rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)
        Image.fromarray(img).save(corpus / f"{i}.png")
    build_pack(corpus, tmp_path / "pack.npz", max_side_px=96)
    return tmp_path / "pack.npz"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_two_runs_side_by_side_come_back_as_seven_files(pack: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    extra = (
        f"--config {TINY} --crop-px 64 --batch-size 2 --kmeans-batches 2 --export-every 2 "
        "--val-every 4 --threads 1 --bf16 false"
    )
    env = {
        **os.environ,
        "OUT": str(out),
        "DEVICE": "cpu",
        "WALL_S": "4",
        "PACK": str(pack),
        "SITE": str(tmp_path / "site"),  # carried wheels, if this checkout has any
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    done = subprocess.run(
        ["bash", "tools/gpu_train.sh", "a", extra, "b", f"{extra} --lr 2e-4"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert len(files) == 7  # per run: average, newest export, log; one console (8 come back)
    for run in ("a", "b"):
        exports = [f for f in files if f.startswith(f"{run}/step_")]
        assert len(exports) == 1  # the newest; the older ones live on in the average
        assert f"{run}/avg.pt" in files and f"{run}/log.jsonl" in files
        assert not (out / run / "last.ckpt").exists()
        avg = load_weights(out / run / "avg.pt")
        assert avg["stored_dtype"] == "float16" and len(avg["averaged_steps"]) >= 2
        log = [json.loads(line) for line in (out / run / "log.jsonl").read_text().splitlines()]
        assert any("val_msssim" in record for record in log)
    console = (out / "console.log").read_text()
    assert "== a" in console and "== b" in console
    assert "--max-wall-s reached" in console


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_an_unpaired_run_name_is_refused_before_anything_runs(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "DEVICE": "cpu"}
    done = subprocess.run(
        ["bash", "tools/gpu_train.sh", "a", "--lr 1e-4", "b"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == 'gpu_train.sh: arguments come in pairs NAME "EXTRA ARGS"; got 3 words'
    )
    assert not any(tmp_path.iterdir())
