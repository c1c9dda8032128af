"""Wall time of a full replay: a 768×512 image over bds3-rsmc-geo, a preview and scores after
every packet, the whole report folder written.

    python benchmarks/bench_replay.py [--image ../shared/data/kodak/kodim23.png] [--runs 5]

Two figures: the `satlink replay` command as a user runs it (a fresh process: imports and model
load included), and the in-process `replay()` call with its stages timed separately.

    python benchmarks/bench_replay.py --runs 5 --baseline /tmp/base   # against another checkout

``--baseline DIR`` (a checkout, e.g. ``git worktree add /tmp/base <commit>``) also times that
checkout's `satlink replay`, alternating run by run with this one, and prints the ratio.

    python benchmarks/bench_replay.py --runs 9 --against progic-rvq-v9   # model against model

``--against MODEL`` also times the in-process ``replay()`` (report folder written) with that
model and with the default one, in one process, their order swapped each run: a model's gain
without the start-up of a fresh process, whose noise (about ±5 %) hides a few per cent.
Bar (issue 5): ≤ 15 s on the project's 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_IMAGE = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak" / "kodim23.png"


def synthetic_768x512() -> Path:
    from PIL import Image
    from skimage import data

    img = np.asarray(Image.fromarray(data.astronaut()).resize((768, 512)))
    path = Path(tempfile.mkdtemp()) / "synthetic_768x512.png"
    Image.fromarray(img).save(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scenario", default="bds3-rsmc-geo")
    ap.add_argument("--baseline", type=Path, help="another checkout to time alternately")
    ap.add_argument("--against", help="a second model to time in process, alternately")
    args = ap.parse_args()
    image = args.image if args.image.is_file() else synthetic_768x512()

    def cli_run(seed: int, checkout: Path) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "satlink.cli", "replay", args.scenario,
                   "--image", str(image.resolve()), "--out", f"{tmp}/out", "--quiet",
                   "--seed", str(seed)]  # fmt: skip
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, cwd=checkout)
            return time.perf_counter() - t0

    here = Path(__file__).resolve().parents[1]
    cli_s, base_s = [], []
    for i in range(args.runs):  # alternate, so a drift in the machine's speed hits both alike
        cli_s.append(cli_run(i, here))
        if args.baseline is not None:
            base_s.append(cli_run(i, args.baseline.resolve()))

    import torch

    torch.set_num_threads(2)
    import codec
    from satlink.replay import replay

    model = codec.default_codec()
    replay(args.scenario, str(image), codec=model)  # warm-up
    api_s, previews = [], 0
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = replay(args.scenario, str(image), seed=i, out_dir=tmp, codec=model)
            api_s.append(time.perf_counter() - t0)
            previews = len(res.previews)

    pair_s: list[list[float]] = [[], []]
    if args.against:
        models = (model, codec.load_codec(args.against))
        replay(args.scenario, str(image), codec=models[1])  # warm-up
        for i in range(args.runs):
            for k in (0, 1) if i % 2 == 0 else (1, 0):
                with tempfile.TemporaryDirectory() as tmp:
                    t0 = time.perf_counter()
                    replay(args.scenario, str(image), seed=i, out_dir=tmp, codec=models[k])
                    pair_s[k].append(time.perf_counter() - t0)

    # Where the time goes: one decode + score per preview dominates.
    code = model.encode(str(image))
    from codec.metrics import Reference

    ref = codec.load_image(str(image))
    scorer = Reference(ref)  # as the receiver does: the original's moments prepared once
    t0 = time.perf_counter()
    for _ in range(3):
        out = model.decode(code, code.stage_mask(2))
    decode_s = (time.perf_counter() - t0) / 3
    t0 = time.perf_counter()
    for _ in range(3):
        scorer.psnr(out), scorer.ms_ssim(out)
    score_s = (time.perf_counter() - t0) / 3

    print(
        f"image: {image.name} ({ref.shape[1]}×{ref.shape[0]}), scenario {args.scenario}, "
        f"{previews} previews, torch threads 2, median of {args.runs}"
    )
    print()
    print("| measure | median (s) | min (s) | max (s) | bar |")
    print("|---|---|---|---|---|")
    print(
        f"| `satlink replay` (fresh process) | {statistics.median(cli_s):.2f} | "
        f"{min(cli_s):.2f} | {max(cli_s):.2f} | ≤ 15 s |"
    )
    print(
        f"| `replay()` in process, model loaded | {statistics.median(api_s):.2f} | "
        f"{min(api_s):.2f} | {max(api_s):.2f} | |"
    )
    if base_s:
        ratios = [a / b for a, b in zip(cli_s, base_s, strict=True)]
        print(
            f"| `satlink replay`, baseline {args.baseline} | {statistics.median(base_s):.2f} | "
            f"{min(base_s):.2f} | {max(base_s):.2f} | |"
        )
        print(f"| this / baseline, run by run | {statistics.median(ratios):.3f} | "
              f"{min(ratios):.3f} | {max(ratios):.3f} | |")  # fmt: skip
    if args.against:
        ratios = [a / b for a, b in zip(pair_s[0], pair_s[1], strict=True)]
        for name, ts in ((model.name, pair_s[0]), (args.against, pair_s[1])):
            print(
                f"| `replay()` in process, {name}, alternating | {statistics.median(ts):.2f} | "
                f"{min(ts):.2f} | {max(ts):.2f} | |"
            )
        print(f"| {model.name} / {args.against}, run by run | {statistics.median(ratios):.3f} | "
              f"{min(ratios):.3f} | {max(ratios):.3f} | |")  # fmt: skip
    print(f"| one decode (per preview) | {decode_s:.3f} | | | |")
    print(f"| one PSNR + MS-SSIM (per preview) | {score_s:.3f} | | | |")


if __name__ == "__main__":
    main()
