"""Is the latent collapsed? Participation ratio, residual energy and index entropy per stage.

    python benchmarks/bench_latent.py [--model NAME_OR_PT] [--data ../shared/data/kodak] [--limit N]

Encodes every PNG or JPEG under ``--data`` (subfolders too; whole pictures, padded to the
codec's grid), pools the latent vectors of all of them and prints the participation ratio of
their covariance ((sum of eigenvalues)^2 /
sum of squared eigenvalues: 1 for a line, 64 for an isotropic cloud; issue 12's bar is ≥ 8) and
the share of the latent's energy left after each RVQ stage (``codec.train.latent_diagnostics``,
the same figures training logs on its validation crops), and the unigram entropy of each
stage's indices in bits: what a per-packet entropy code could at best save over the fixed
``log2(codebook size)`` bits an index takes in a packet.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from codec import default_codec, load_codec
from codec.api import load_image
from codec.train import latent_diagnostics

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    codec = load_codec(args.model) if args.model else default_codec()
    zs, cws, idx = [], [], []
    images = (p for p in args.data.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    paths = sorted(images)[: args.limit or None]
    if not paths:
        sys.exit(f"bench_latent.py: no PNG or JPEG pictures under {args.data}")
    with torch.inference_mode():
        for path in paths:
            x, _ = codec.to_tensor(load_image(path))
            z = codec.net.analysis(x)
            indices, codewords = codec.net.quantize(z)
            idx.append(indices.flatten(2)[0])  # [S, h*w]
            zs.append(z.flatten(2).transpose(1, 2).reshape(-1, z.shape[1]))
            cws.append(codewords.flatten(3).permute(0, 3, 1, 2).reshape(-1, *codewords.shape[1:3]))
    z = torch.cat(zs)[:, :, None, None]  # [N, D, 1, 1]: one "image" per latent vector
    cw = torch.cat(cws)[:, :, :, None, None]  # [N, S, D, 1, 1]
    d = latent_diagnostics(z, cw)
    energy = " / ".join(f"{100 * e:.3g} %" for e in d["residual_energy_per_stage"])
    print(f"{codec.name}: {len(paths)} images, {len(z)} latent vectors of {z.shape[1]} dimensions")
    print(
        f"participation ratio {d['latent_participation_ratio']:.2f}; energy left after "
        f"stages 1..{cw.shape[1]}: {energy}"
    )
    size = codec.net.config.codebook_size
    bits = []
    for stage in torch.cat(idx, 1):
        p = np.bincount(stage.numpy(), minlength=size) / stage.numel()
        bits.append(float(-(p[p > 0] * np.log2(p[p > 0])).sum()))
    print(
        f"index entropy at stages 1..{len(bits)}: "
        + " / ".join(f"{b:.2f}" for b in bits)
        + f" bits (a packet spends {np.log2(size):.0f})"
    )


if __name__ == "__main__":
    main()
