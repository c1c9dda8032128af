"""Encoder-side search on Kodak: quality per stage and encode time per effort and beam width.

    python benchmarks/bench_effort.py [--data ../shared/data/kodak] [--efforts 0,3,10]
        [--beam-widths 8] [--limit N] [--threads 2] [--out runs/effort.json] [--baseline DIR]

For every image and setting (each effort at beam width 1, then each beam width above 1 at effort
0), encodes with ``Codec.encode(image, effort=N, beam_width=W)`` (timed), decodes
stages 1..5 and scores PSNR and MS-SSIM (``codec.metrics``). Prints the mean per stage and the
median encode time per effort as a markdown table, with the CPU model and instruction set; raw
per-image figures go to ``--out``. Quality does not depend on machine load; encode time does, so
time it on a quiet machine (for the AVX2 bar: ``MKL_ENABLE_INSTRUCTIONS=AVX2
ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2``).

``--baseline DIR`` (another checkout, e.g. ``git worktree add /tmp/base <commit>``) encodes
every image at every effort there too, in a fresh process right after this checkout's encode
(alternating, so a drift in the machine's speed hits both alike; the timer excludes start-up,
and both sides warm up with an effort-1 encode first),
and prints its table and the median time ratio, image by image (efforts only: a baseline may
predate the beam).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from codec import default_codec, load_codec
from codec.api import load_image
from codec.metrics import ms_ssim_batch, psnr_batch

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def cpu_label() -> str:
    model = "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
        has512 = "avx512f" in out
    except OSError:
        has512 = False
    isa = os.environ.get("ATEN_CPU_CAPABILITY") or ("avx512" if has512 else "avx2")
    return f"{model}, torch ISA {isa}, {torch.get_num_threads()} threads"


# Run in the baseline checkout (cwd, so its ``codec`` is the one imported): one encode, timed,
# and its five previews scored with that checkout's own code.
BASELINE_SNIPPET = """
import json, sys, time
import numpy as np, torch
torch.set_num_threads(int(sys.argv[3]))
from codec import default_codec, load_codec
from codec.api import load_image
from codec.metrics import ms_ssim_batch, psnr_batch
codec = load_codec(sys.argv[4]) if sys.argv[4] else default_codec()
img = load_image(sys.argv[1])
if int(sys.argv[2]):  # the first backward pass of a process sets up kernels (~1 s): not timed
    codec.encode(img, effort=1)
t0 = time.perf_counter()
code = codec.encode(img, effort=int(sys.argv[2]))
encode_s = time.perf_counter() - t0
previews = np.stack(codec.decode_batch(code, [code.stage_mask(k) for k in range(1, 6)]))
print(json.dumps({"encode_s": encode_s, "psnr_db": psnr_batch(img, previews).tolist(),
                  "ms_ssim": ms_ssim_batch(img, previews).tolist()}))
"""


def baseline_row(checkout: Path, path: Path, effort: int, threads: int, model: str) -> dict:
    cmd = [sys.executable, "-c", BASELINE_SNIPPET, str(path.resolve()), str(effort),
           str(threads), model]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=checkout).stdout
    return {"image": path.name, "effort": effort, "checkout": "baseline", **json.loads(out)}


def print_table(rows: list[dict], settings: list[tuple[int, int]]) -> None:
    print(
        "| effort | beam width | median encode s | MS-SSIM at 1 / 2 / 3 / 4 / 5 stages "
        "| PSNR dB at 1..5 |"
    )
    print("|---|---|---|---|---|")
    for effort, width in settings:
        sel = [r for r in rows if _setting(r) == (effort, width)]
        if not sel:
            continue
        ms = np.mean([r["ms_ssim"] for r in sel], 0)
        ps = np.mean([r["psnr_db"] for r in sel], 0)
        t = statistics.median(r["encode_s"] for r in sel)
        print(
            f"| {effort} | {width} | {t:.2f} | {' / '.join(f'{v:.4f}' for v in ms)} | "
            f"{' / '.join(f'{v:.2f}' for v in ps)} |"
        )


def _setting(row: dict) -> tuple[int, int]:
    return row["effort"], row.get("beam_width", 1)  # files from before the beam: width 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--efforts", default="0,3,10")
    ap.add_argument("--beam-widths", default="", help="beam widths above 1, each at effort 0")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="")
    ap.add_argument("--out", type=Path, default=Path("runs/effort.json"))
    ap.add_argument("--baseline", type=Path, help="another checkout to encode alternately")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    codec = load_codec(args.model) if args.model else default_codec()
    efforts = [int(e) for e in args.efforts.split(",")]
    widths = [int(w) for w in args.beam_widths.split(",") if w.strip() and int(w) > 1]
    settings = [(e, 1) for e in efforts] + [(0, w) for w in widths]
    paths = sorted(args.data.glob("*.png"))[: args.limit or None]
    label = cpu_label()
    rows = []
    if args.out.is_file():  # resume: a long run writes after every image
        old = json.loads(args.out.read_text())
        if old.get("model") == codec.name:
            rows = [r for r in old["rows"] if _setting(r) in settings]
    done = {(r["image"], *_setting(r), r.get("checkout", "this")) for r in rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if paths and any(efforts):  # the first backward pass sets up kernels (~1 s): not timed
        codec.encode(load_image(paths[0]), effort=1)
    for path in paths:
        img = load_image(path)
        for effort, width in settings:
            baseline = args.baseline is not None and width == 1
            if baseline and (path.name, effort, 1, "baseline") not in done:
                rows.append(baseline_row(args.baseline, path, effort, args.threads, args.model))
            if (path.name, effort, width, "this") in done:
                continue
            t0 = time.perf_counter()
            code = codec.encode(img, effort=effort, beam_width=width)
            encode_s = time.perf_counter() - t0
            previews = np.stack(codec.decode_batch(code, [code.stage_mask(k) for k in range(1, 6)]))
            rows.append(
                {
                    "image": path.name,
                    "effort": effort,
                    "beam_width": width,
                    "checkout": "this",
                    "encode_s": encode_s,
                    "psnr_db": psnr_batch(img, previews).tolist(),
                    "ms_ssim": ms_ssim_batch(img, previews).tolist(),
                }
            )
            print(
                path.name,
                effort,
                width,
                f"{encode_s:.2f} s",
                np.round(rows[-1]["ms_ssim"], 4),
                flush=True,
            )
            doc = {"cpu": label, "model": codec.name, "rows": rows}
            args.out.write_text(json.dumps(doc, indent=1))
    mine = [r for r in rows if r.get("checkout", "this") == "this"]
    paths = [p for p in paths if p.name in {r["image"] for r in mine}]
    print(
        f"\n{len(paths)} images, {codec.name}, {label} (encode times: as measured, load included)\n"
    )
    print_table(mine, settings)
    base = {(r["image"], r["effort"]): r for r in rows if r.get("checkout") == "baseline"}
    if base:
        print(f"\nbaseline {args.baseline}:\n")
        print_table(list(base.values()), [(e, 1) for e in efforts])
        print("\n| effort | encode time, this / baseline (median of image-by-image ratios) |")
        print("|---|---|")
        for effort in efforts:
            ratios = [
                r["encode_s"] / base[r["image"], effort]["encode_s"]
                for r in mine
                if _setting(r) == (effort, 1) and (r["image"], effort) in base
            ]
            if ratios:
                print(f"| {effort} | {statistics.median(ratios):.3f} |")


if __name__ == "__main__":
    main()
