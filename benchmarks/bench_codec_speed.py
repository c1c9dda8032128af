"""Codec speed against the issue's bars, as a markdown table.

    python benchmarks/bench_codec_speed.py [--repeats 5] [--threads 2] [--image PATH]
        [--against MODEL [--rounds 15]]

With ``torch.set_num_threads(2)`` (``--threads``), median of ``--repeats`` runs after two warm-up
runs:

- encode 768×512 (bar ≤ 150 ms), decode 768×512 (bar ≤ 250 ms), decode 256×256 (bar ≤ 40 ms);
- a preview after every packet: the 768×512 code cut into 360-byte stage-major packets
  (274 indices each, as ``satlink.packets`` packs them), one decode per packet received, one by
  one against ``Codec.decode_batch`` in groups.

It uses the shipped model (``codec.default_codec()``) when its weights are present, else the
default ``CodecConfig`` with random weights (the time does not depend on the weights); the output
says which. The image is Kodak ``kodim01`` when present, else a synthetic one of the same size.
The load average is printed because a busy machine (a training run) slows everything down.

``--against MODEL`` (a name, id or file, as ``--model`` takes) also times the 768×512 decode of
both models in this one process, one decode each per round, their order swapped every round, so
that a drift in the machine's speed hits both alike; it reports each model's median and the
median of the per-round ratios (this model over the other). Each model decodes its own code of
the image.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from benchtools import median_ms

from codec import (
    Codec,
    CodecConfig,
    ModelNotFoundError,
    ProgressiveCodec,
    default_codec,
    load_codec,
)
from codec.api import load_image

DEFAULT_IMAGE = Path("/work/shared/data/kodak/kodim01.png")
INDICES_PER_PACKET = 274  # a 360-byte packet: (360 - 13 header - 4 CRC) * 8 // 10 bits


def _load_codec() -> tuple[Codec, str]:
    try:
        c = default_codec()
        return c, f"shipped model {c.name} (id {c.model_id})"
    except ModelNotFoundError as exc:
        torch.manual_seed(0)
        net = ProgressiveCodec(CodecConfig())
        return (
            Codec(net, model_id=0, name="random"),
            f"default CodecConfig with random weights ({exc}); timing does not depend on weights",
        )


def _image(path: Path | None) -> tuple[np.ndarray, str]:
    path = path or DEFAULT_IMAGE
    if path.is_file():
        img = load_image(path)
        if img.shape[0] > img.shape[1]:
            img = np.ascontiguousarray(img.transpose(1, 0, 2))
        return img, str(path)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:512, 0:768]
    img = np.stack([x / 3, y / 2, (x + y) / 5], -1) + rng.normal(0, 20, (512, 768, 3))
    return np.clip(img, 0, 255).astype(np.uint8), "synthetic 768×512 (no Kodak image found)"


def _packet_masks(shape: tuple[int, int, int], per_packet: int) -> list[np.ndarray]:
    """The received mask after each stage-major packet (packets never mix stages)."""
    stages, h, w = shape
    masks, mask = [], np.zeros(shape, bool)
    for s in range(stages):
        flat = mask[s].reshape(-1)
        for start in range(0, h * w, per_packet):
            flat[start : start + per_packet] = True
            masks.append(mask.copy())
    return masks


def paired_decode_ms(
    a: Codec, b: Codec, img: np.ndarray, rounds: int
) -> tuple[float, float, float]:
    """Medians of ``a``'s and ``b``'s decode of ``img`` (ms) and of the per-round ratio a / b."""
    codes = [c.encode(img) for c in (a, b)]
    for _ in range(2):  # warm-up
        a.decode(codes[0])
        b.decode(codes[1])
    times: list[list[float]] = [[], []]
    for r in range(rounds):
        for k in (0, 1) if r % 2 == 0 else (1, 0):
            t0 = time.perf_counter()
            (a, b)[k].decode(codes[k])
            times[k].append(time.perf_counter() - t0)
    ratios = [x / y for x, y in zip(times[0], times[1], strict=True)]
    return (
        statistics.median(times[0]) * 1000,
        statistics.median(times[1]) * 1000,
        statistics.median(ratios),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--image", type=Path, default=None)
    ap.add_argument(
        "--batch",
        type=int,
        nargs="+",
        default=[4, 8],
        help="decode_batch group sizes for the per-packet previews",
    )
    ap.add_argument("--against", default=None, help="a second model: paired 768×512 decodes")
    ap.add_argument("--rounds", type=int, default=15, help="rounds of the paired decodes")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    codec, model_text = _load_codec()
    img, img_text = _image(args.image)
    crop = np.ascontiguousarray(img[:256, :256])
    code = codec.encode(img)
    small = codec.encode(crop)
    masks = _packet_masks(code.indices.shape, INDICES_PER_PACKET)

    rows: list[tuple[str, float, str, str]] = []

    def bar_row(label: str, ms: float, bar_ms: float | None) -> None:
        bar = f"≤ {bar_ms:g}" if bar_ms else "–"
        ok = "" if bar_ms is None else ("yes" if ms <= bar_ms else "**no**")
        rows.append((label, ms, bar, ok))

    bar_row("encode 768×512", median_ms(lambda: codec.encode(img), args.repeats), 150)
    bar_row("decode 768×512 (all stages)", median_ms(lambda: codec.decode(code), args.repeats), 250)
    one = code.stage_mask(1)
    bar_row(
        "decode 768×512 (stage 1 only)",
        median_ms(lambda: codec.decode(code, one), args.repeats),
        None,
    )
    bar_row("decode 256×256 (all stages)", median_ms(lambda: codec.decode(small), args.repeats), 40)
    bar_row("encode 256×256", median_ms(lambda: codec.encode(crop), args.repeats), None)

    # Previews after every packet: per-preview cost, one by one against batched.
    n = len(masks)
    reps = max(1, args.repeats // 2)

    def one_by_one() -> None:
        for m in masks:
            codec.decode(code, m)

    bar_row(
        f"{n} per-packet previews 768×512, one by one (per preview)",
        median_ms(one_by_one, reps, warmup=1) / n,
        None,
    )
    for b in args.batch:

        def batched(b: int = b) -> None:
            for i in range(0, n, b):
                codec.decode_batch(code, masks[i : i + b])

        bar_row(
            f"{n} per-packet previews 768×512, decode_batch of {b} (per preview)",
            median_ms(batched, reps, warmup=1) / n,
            None,
        )

    paired = ""
    if args.against:
        other = load_codec(args.against)
        a_ms, b_ms, ratio = paired_decode_ms(codec, other, img, args.rounds)
        paired = (
            f"| decode 768×512, paired with {other.name}: {codec.name} / {other.name} "
            f"({args.rounds} rounds, order swapped each round) | {a_ms:.1f} / {b_ms:.1f} "
            f"| median ratio {ratio:.3f} | |"
        )

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# Codec speed ({platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} threads, median of {args.repeats})\n"
    )
    print(f"- model: {model_text}")
    print(
        f"- parameters: {codec.net.num_parameters() / 1e6:.2f} M; code "
        f"{code.indices.shape[0]}×{code.indices.shape[1]}×{code.indices.shape[2]}, "
        f"{n} packets of {INDICES_PER_PACKET} indices"
    )
    print(f"- image: {img_text}")
    print(f"- load average (1 min) at the end: {load:.2f} on {os.cpu_count()} CPUs\n")
    print("| operation | median ms | bar ms | meets bar |")
    print("|---|---:|---:|---|")
    for label, ms, bar, ok in rows:
        print(f"| {label} | {ms:.1f} | {bar} | {ok} |")
    if paired:
        print(paired)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
