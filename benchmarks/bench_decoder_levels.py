"""Where a 768×512 decode spends its time, level by level, and two rewrites of it that were tried.

    MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 \\
    FBGEMM_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/bench_decoder_levels.py [--repeats 9]

Prints the median time of each part of the synthesis (attention, each resolution level's
blocks, each upsampling conv), then the whole synthesis three ways, each against the shipped
path in the same run:

- ``strips``: the 1/4 and 1/2 levels run in horizontal strips of 16 rows (with a halo of one
  row per block), so that a block's intermediate tensors stay in cache;
- ``linear``: every block's pointwise pair as ``F.linear`` on the channels-last view (a BLAS
  GEMM, MKL here) instead of oneDNN's 1×1 convolution.

``MKL_ENABLE_INSTRUCTIONS=AVX2`` matters: without it MKL (the attention's GEMMs, ``F.linear``)
uses AVX-512 on a host that has it whatever ``ATEN_CPU_CAPABILITY`` says.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from benchtools import median_ms

from codec import zoo

KODIM23 = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak" / "kodim23.png"
ENV_KEYS = (
    "MKL_ENABLE_INSTRUCTIONS",
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "FBGEMM_ENABLE_INSTRUCTIONS",
)


def linear_block(block: torch.nn.Module, x: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
    scale, bias = film[0, :, 0, 0].chunk(2)
    gain = 1 + scale
    y = F.conv2d(
        x,
        block.dw.weight * gain[:, None, None, None],
        torch.addcmul(bias, block.dw.bias, gain),
        padding=block.dw.padding,
        groups=block.dw.groups,
    ).permute(0, 2, 3, 1)
    w1, w2 = block.pw1.weight[:, :, 0, 0], block.pw2.weight[:, :, 0, 0]
    out = F.linear(F.relu_(F.linear(y, w1, block.pw1.bias)), w2, block.pw2.bias)
    return out.permute(0, 3, 1, 2).add_(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", type=Path, default=KODIM23)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    codec = zoo.load_codec()
    net, cfg = codec.net, codec.net.config
    if args.image.is_file():
        code = codec.encode(args.image)
    else:  # without ../shared: a smooth synthetic picture of the same size
        y, x = np.mgrid[0:512, 0:768]
        img = np.stack([x / 3, y / 2, (x + y) / 5], -1).astype(np.uint8)
        code = codec.encode(img)
    idx = torch.from_numpy(code.indices.astype(np.int64))[None]
    rec = torch.ones_like(idx, dtype=torch.bool)
    films_all = net.stage_film(torch.tensor([cfg.num_stages - 1]))[:, :, None, None]

    def level_films(i: int) -> list[torch.Tensor]:
        off = sum(2 * c * d for c, d in zip(cfg.dec_channels[:i], cfg.dec_depths[:i], strict=True))
        ch = cfg.dec_channels[i]
        return [
            films_all[:, off + 2 * ch * j : off + 2 * ch * (j + 1)]
            for j in range(cfg.dec_depths[i])
        ]

    def run_level(i, h, block_fn, strip_rows=None):
        blocks, films = net.dec_levels[i], level_films(i)
        if strip_rows is None:
            for b, f in zip(blocks, films, strict=True):
                h = block_fn(b, h, f)
            return F.pixel_shuffle(net.dec_up[i](h), 2)
        k, rows, outs = len(blocks), h.shape[2], []
        for a in range(0, rows, strip_rows):
            e = min(rows, a + strip_rows)
            lo, hi = max(0, a - k), min(rows, e + k)
            s = h[:, :, lo:hi]
            for b, f in zip(blocks, films, strict=True):
                s = block_fn(b, s, f)
            outs.append(F.pixel_shuffle(net.dec_up[i](s[:, :, a - lo : e - lo]), 2))
        return torch.cat(outs, 2)

    def synthesis(block_fn, strips=()):
        latent = net.assemble_latent(net.rvq.lookup(idx), rec)
        h = net.dec_attn(net.from_latent(torch.cat([latent, rec.float()], 1)))
        for i in range(len(cfg.dec_channels)):
            h = run_level(i, h, block_fn, 16 if i in strips else None)
        return h + 0.5

    def conv_block(b, h, f):
        return b(h, f)

    with torch.inference_mode():
        ref = net.synthesis(net.assemble_latent(net.rvq.lookup(idx), rec), rec)
        # Parts: the attention, then each level's blocks and its upsampling conv.
        latent = net.assemble_latent(net.rvq.lookup(idx), rec)
        h = net.from_latent(torch.cat([latent, rec.float()], 1))
        parts = [("attention (1/16)", median_ms(lambda: net.dec_attn(h), args.repeats))]
        h = net.dec_attn(h)
        for i, ch in enumerate(cfg.dec_channels):
            x = h

            def blocks(x=x, i=i):
                for b, f in zip(net.dec_levels[i], level_films(i), strict=True):
                    x = b(x, f)
                return x

            parts.append(
                (
                    f"level {i}: {len(net.dec_levels[i])} blocks × {ch} ch",
                    median_ms(blocks, args.repeats),
                )
            )
            y = blocks()
            parts.append(
                (
                    f"level {i}: upsampling",
                    median_ms(lambda y=y, i=i: F.pixel_shuffle(net.dec_up[i](y), 2), args.repeats),
                )
            )
            h = F.pixel_shuffle(net.dec_up[i](y), 2)
        variants = {
            "shipped": lambda: synthesis(conv_block),
            "strips (1/4, 1/2)": lambda: synthesis(conv_block, strips=(2, 3)),
            "linear pointwise": lambda: synthesis(linear_block),
        }
        diffs = {k: float((fn() - ref).abs().max()) for k, fn in variants.items()}
        times = {k: [] for k in variants}
        for _ in range(3):  # alternate, so drift hits every variant alike
            for k, fn in variants.items():
                times[k].append(median_ms(fn, args.repeats))
    env = ", ".join(f"{k}={os.environ[k]}" for k in ENV_KEYS if k in os.environ) or "native ISA"
    print(
        f"synthesis of {code.image_size[1]}×{code.image_size[0]}, {args.threads} threads; {env}\n"
    )
    print("| part | median ms |\n|---|---:|")
    for name, ms in parts:
        print(f"| {name} | {ms:.1f} |")
    base = statistics.median(times["shipped"])
    print("\n| synthesis | median ms | ratio to shipped | max change |\n|---|---:|---:|---:|")
    for k in variants:
        ms = statistics.median(times[k])
        print(f"| {k} | {ms:.1f} | {ms / base:.3f} | {diffs[k]:.1e} |")


if __name__ == "__main__":
    main()
