"""Time of the encoder's index search alone: the nearest codes against the beam at each width.

    MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 \\
    FBGEMM_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/bench_search.py [--widths 1,4,8,16]
        [--image PATH] [--repeats 7] [--model NAME]

The latent of one 768×512 picture (default: the built-in astronaut, resized; Kodak's kodim23
with ``--image``) is computed once; then ``net.quantize`` (the default encoder's search) and
``codec.search.beam_indices`` at each width are timed, median of ``--repeats`` after a warm-up,
with the ratio to the nearest codes. Quality per width is ``bench_effort.py --beam-widths``'s.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from bench_effort import cpu_label
from benchtools import median_ms
from PIL import Image

from codec import default_codec, load_codec
from codec.api import load_image
from codec.search import beam_indices


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", default="1,4,8,16")
    ap.add_argument("--image", default="")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    codec = load_codec(args.model) if args.model else default_codec()
    if args.image:
        rgb = load_image(args.image)
    else:
        from skimage import data

        rgb = np.asarray(Image.fromarray(data.astronaut()).resize((768, 512)))
    x, _ = codec.to_tensor(rgb)
    with torch.inference_mode():
        z = codec.net.analysis(x)
        nearest = median_ms(lambda: codec.net.quantize(z), args.repeats)
        print(f"{codec.name}, latent {tuple(z.shape)}, {cpu_label()}\n")
        print("| search | median ms | ratio to the nearest codes |")
        print("|---|---:|---:|")
        print(f"| nearest codes (`net.quantize`, the default) | {nearest:.1f} | 1 |")
        for w in (int(v) for v in args.widths.split(",")):
            ms = median_ms(lambda w=w: beam_indices(codec.net, z, w), args.repeats)
            print(f"| beam, width {w} | {ms:.1f} | {ms / nearest:.2f} |")


if __name__ == "__main__":
    main()
