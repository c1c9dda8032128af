"""RVQ codec quality against AVIF, JPEG XL and JPEG at the same packets, as a markdown table.

    python benchmarks/bench_codec_quality.py [--data DIR] [--out runs/codec_eval/rvq.json]
        [--codecs rvq,avif,jxl,jpeg] [--limit N] [--workers 2] [--budget packets|raw]

Runs :func:`codec.eval.run_eval` on a folder (default: the 24 Kodak images) and prints, per stage
count, the packets and bytes sent, the mean PSNR and MS-SSIM of the RVQ codec and of each
classical codec, whether RVQ's MS-SSIM is at least AVIF's (the issue's bar), and codebook usage
per stage (bar: at least 80%).

Budgets (``--budget``):

- ``packets`` (default): RVQ sends ``k`` stages in whole 360-byte packets, headers included
  (``satlink.packets``); a classical file must fit the same number of packets with its own
  headers (``packets × byte_capacity``, 346 bytes each). This is the product's comparison.
- ``raw``: raw index bytes (``ceil(k × h × w × 10 / 8)``, 1,920 … 9,600 for Kodak) for both; this
  reproduces the issue's AVIF reference table.

Classical codecs report their best PSNR and best MS-SSIM over the fitting settings and scales
(``select="each"``, as the reference table). The JSON files and the RD plot land beside ``--out``.
A full Kodak run takes several minutes on 2 cores (AVIF at speed 6 dominates); ``--limit 2``
makes a smoke test.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import torch

from codec import Codec, CodecConfig, ProgressiveCodec, load_codec
from codec.eval import CODEC_NAMES, EvalError, run_eval
from codec.zoo import DEFAULT_MODEL

DEFAULT_DATA = Path("/work/shared/data/kodak")
# (stages, AVIF PSNR, AVIF MS-SSIM) at raw index bytes, from the issue (mean over Kodak).
AVIF_REFERENCE = {
    1: (24.26, 0.8215),
    2: (26.04, 0.8795),
    3: (27.23, 0.9106),
    4: (28.14, 0.9267),
    5: (28.87, 0.9389),
}


def _budgets(kind: str, packet_size: int):
    """(bytes_for_stages, classical_budget, label) for run_eval."""
    if kind == "raw":
        return None, None, "raw index bits, rounded up to bytes"
    from satlink import packets

    sent = functools.partial(packets.bytes_for_stages, packet_size_bytes=packet_size)

    def sent_bytes(code, k: int) -> int:
        return sent(code.latent_shape, k, bits_per_index=code.bits_per_index)

    def file_bytes(code, k: int) -> int:
        n = packets.packets_for_stages(
            code.latent_shape, k, bits_per_index=code.bits_per_index, packet_size_bytes=packet_size
        )
        return n * packets.byte_capacity(packet_size)

    label = (
        f"whole {packet_size}-byte packets, headers included; a classical file must fit "
        f"the same packets ({packets.byte_capacity(packet_size)} file bytes each)"
    )
    return sent_bytes, file_bytes, label


def _fmt(x, digits: int) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=Path("runs/codec_eval/rvq.json"))
    ap.add_argument("--codecs", default=",".join(CODEC_NAMES))
    ap.add_argument("--model", default=DEFAULT_MODEL, help="model name, id or .pt path")
    ap.add_argument(
        "--random-weights",
        action="store_true",
        help="smoke test only: default CodecConfig with random weights",
    )
    ap.add_argument("--limit", type=int, default=0, help="only the first N images")
    ap.add_argument("--workers", type=int, default=2, help="processes for classical codecs")
    ap.add_argument("--budget", choices=("packets", "raw"), default="packets")
    ap.add_argument("--packet-size", type=int, default=360)
    ap.add_argument("--per-image", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1 if args.workers > 1 else 2)

    if args.random_weights:
        torch.manual_seed(0)
        codec = Codec(ProgressiveCodec(CodecConfig()), model_id=0, name="random-weights")
    else:
        codec = load_codec(args.model)
    sent_bytes, file_bytes, label = _budgets(args.budget, args.packet_size)
    t0 = time.perf_counter()
    try:
        got = run_eval(
            args.data,
            args.out,
            codecs=args.codecs,
            bytes_for_stages=sent_bytes,
            classical_budget=file_bytes,
            per_image=args.per_image,
            codec=codec,
            limit=args.limit or None,
            workers=args.workers,
            budget_label=label,
        )
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0
    res = got["results"]
    any_doc = next(iter(res.values()))
    n_img = any_doc["images"]
    stages = any_doc["results"]["stages"]
    classical = [c for c in ("avif", "jxl", "jpeg") if c in res]

    print(f"# Codec quality: {codec.name} on {n_img} images from {args.data}\n")
    print(f"- budget: {label}")
    print(
        f"- wall time: {wall:.0f} s ({args.workers} workers); files: "
        + ", ".join(got["files"].values())
        + f"; plot: {got['plot']}\n"
    )
    head = ["stages", "bytes sent"]
    if "rvq" in res:
        head += ["RVQ PSNR", "RVQ MS-SSIM"]
    for c in classical:
        head += [f"{res[c]['name']} PSNR", f"{res[c]['name']} MS-SSIM", f"{res[c]['name']} misses"]
    if "rvq" in res and "avif" in res:
        head.append("RVQ MS-SSIM ≥ AVIF")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---:" for _ in head) + "|")
    all_ok = True
    for i, k in enumerate(stages):
        row = [str(k), f"{any_doc['results']['bytes'][i]:,.0f}"]
        if "rvq" in res:
            r = res["rvq"]["results"]
            row += [_fmt(r["psnr-rgb"][i], 2), _fmt(r["ms-ssim-rgb"][i], 4)]
        for c in classical:
            r = res[c]["results"]
            row += [_fmt(r["psnr-rgb"][i], 2), _fmt(r["ms-ssim-rgb"][i], 4), str(r["misses"][i])]
        if "rvq" in res and "avif" in res:
            ok = res["rvq"]["results"]["ms-ssim-rgb"][i] >= res["avif"]["results"]["ms-ssim-rgb"][i]
            all_ok &= ok
            row.append("yes" if ok else "**no**")
        print("| " + " | ".join(row) + " |")
    if "rvq" in res:
        usage = res["rvq"]["codebook_usage"]
        per = ", ".join(f"{u:.1%}" for u in usage["per_stage"])
        print(
            f"\nCodebook usage per stage over {usage['images']} images "
            f"({usage['codebook_size']} codes): {per}; min {usage['min']:.1%} "
            f"({'meets' if usage['min'] >= 0.8 else 'misses'} the 80% bar)"
        )
    if "rvq" in res and "avif" in res:
        print(f"\nRVQ MS-SSIM ≥ AVIF at every stage count: {'yes' if all_ok else 'no'}")
    if args.budget == "raw" and "avif" in res:
        print("\nAVIF against the issue's reference (raw bytes, mean over Kodak):")
        print("\n| stages | AVIF PSNR | reference | AVIF MS-SSIM | reference |")
        print("|---:|---:|---:|---:|---:|")
        for i, k in enumerate(stages):
            if k in AVIF_REFERENCE:
                r = res["avif"]["results"]
                p, m = AVIF_REFERENCE[k]
                print(
                    f"| {k} | {_fmt(r['psnr-rgb'][i], 2)} | {p} | "
                    f"{_fmt(r['ms-ssim-rgb'][i], 4)} | {m} |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
