"""Decode time of lighter synthesis shapes, to size the next model (random weights: the time
does not depend on them).

    MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 \\
    FBGEMM_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/bench_decoder_shapes.py [--repeats 9]

The decoder runs after every packet, so its time is most of a replay's. Its cost sits in the
high-resolution levels (1/4 and 1/2, before the last pixel shuffle), where the parameters are
few: narrowing those levels cuts time at almost no cost in parameters. The first three shapes
keep v2–v7's encoder, quantizer and 1/16 and 1/8 levels (a model of that shape could start
from those weights there and train the rest); the first row, v2–v7's shape, is the baseline of
the ratios; v8's, v9's and v10's shapes are rows three to five, and row six is v10 with the
last block of its 1/16 and 1/8 levels dropped (`tools/narrow_level.py drop`).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics

import torch
from benchtools import median_ms

from codec.model import CodecConfig, ProgressiveCodec

# (synthesis channels at 1/16, 1/8, 1/4, 1/2 resolution; blocks at each)
SHAPES: list[tuple[list[int], list[int]]] = [
    ([256, 128, 96, 48], [3, 2, 2, 1]),  # v2-v7
    ([256, 128, 64, 32], [3, 2, 1, 1]),
    ([256, 128, 64, 32], [4, 3, 2, 1]),  # v8: the above, one block more at each of the first three
    ([256, 128, 64, 24], [4, 3, 2, 1]),  # the above, the 1/2 level at 24 channels (v9)
    ([256, 128, 48, 24], [4, 3, 2, 1]),  # v9 with the 1/4 level at 48 channels (v10)
    ([256, 128, 48, 24], [3, 2, 2, 1]),  # v10 less the last block of the 1/16 and 1/8 levels
    ([256, 128, 48, 24], [3, 2, 1, 1]),  # ... and of the 1/4 level
    ([192, 96, 64, 32], [2, 2, 1, 1]),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    caps = {k: os.environ.get(k, "-") for k in ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")}
    print(f"{platform.processor() or platform.machine()}, {args.threads} threads, {caps}")
    indices = torch.randint(0, 1024, (1, 5, 32, 48), generator=torch.Generator().manual_seed(0))
    nets = []
    for channels, depths in SHAPES:
        change = {"dec_channels": channels, "dec_depths": depths, "latent_norm": True}
        config = CodecConfig.from_dict({**CodecConfig().to_dict(), **change})
        nets.append(ProgressiveCodec(config).eval().to(memory_format=torch.channels_last))
    # Interleaved rounds, one decode of each shape a round: a machine that speeds up or slows
    # down during the run moves every shape alike, and the ratios hold.
    times: list[list[float]] = [[] for _ in nets]
    with torch.inference_mode():
        for net in nets:  # warm-up once, not every round
            net.decode_indices(indices)
        for _ in range(args.repeats):
            for net, got in zip(nets, times, strict=True):
                got.append(median_ms(lambda net=net: net.decode_indices(indices), 1, warmup=0))
    print("| synthesis channels × blocks | decode 768×512 (ms) | ratio | parameters (M) |")
    print("|---|---:|---:|---:|")
    base_ms = statistics.median(times[0])
    for (channels, depths), net, got in zip(SHAPES, nets, times, strict=True):
        ms = statistics.median(got)
        mark = " (v2–v7, the baseline)" if net is nets[0] else ""
        print(
            f"| {channels} × {depths}{mark} | {ms:.1f} | {ms / base_ms:.2f} | "
            f"{net.num_parameters() / 1e6:.2f} |"
        )


if __name__ == "__main__":
    main()
