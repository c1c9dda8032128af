"""Training-step time of the default codec: memory layout and precision choices.

    python benchmarks/bench_train_step.py [--data DIR] [--steps 8] [--threads 2]

Times one full training step (5 stage depths, L1 + MS-SSIM, backward, Adam, EMA codebooks) on
8 crops of 128 px, the shipped configuration's recipe, for: NCHW fp32 (baseline), channels_last
fp32 (what `codec.train` uses), and channels_last with bf16 autocast. Median of `--steps` steps
after two warm-up steps. Uses generated images when `--data` is absent, since the step time does
not depend on the pictures.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from codec.train import TrainConfig, Trainer


def _synthetic_corpus() -> Path:
    folder = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(
            folder / f"{i}.png"
        )
    return folder


def time_steps(data: Path, channels_last: bool, bf16: bool, steps: int, threads: int) -> float:
    cfg = TrainConfig(
        data=str(data),
        out=tempfile.mkdtemp(),
        crop_px=128,
        batch_size=8,
        channels_last=channels_last,
        progress=False,
        threads=threads,
        max_images=40,
        kmeans_batches=2,
    )
    trainer = Trainer(cfg)
    trainer.kmeans_init()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    times = []
    with autocast:
        for i in range(steps + 2):
            t0 = time.perf_counter()
            trainer.train_step()
            if i >= 2:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=Path("../shared/data/train"))
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    data = args.data if args.data.is_dir() else _synthetic_corpus()
    cases = [
        ("NCHW fp32 (baseline)", False, False),
        ("channels_last fp32 (used)", True, False),
        ("channels_last + bf16 autocast", True, True),
    ]
    results = [(name, time_steps(data, cl, bf, args.steps, args.threads)) for name, cl, bf in cases]
    base = results[0][1]
    print(
        f"torch {torch.__version__}, {args.threads} threads, batch 8 × 128 px, 5 depths, "
        f"median of {args.steps} steps"
    )
    print()
    print("| layout / precision | s per step | vs baseline |")
    print("|---|---:|---:|")
    for name, t in results:
        print(f"| {name} | {t:.3f} | {base / t:.2f}× faster |")


if __name__ == "__main__":
    main()
