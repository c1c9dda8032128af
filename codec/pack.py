"""A training pack: the corpus as one portable file, for runs on another machine.

A GPU run gets only what travels with the repository (64 MiB in all), not ``../shared``. The
pack re-encodes every training and validation image (split as ``codec.train`` splits a folder:
every 20th file held out) as JPEG at quality 90, downscaled to at most ``max_side_px``, in one
``.npz``. ``codec.train --data PACK.npz`` trains from it exactly as from the folder. Never build
one from Kodak: :func:`codec.data.list_images` refuses a folder that holds it.

    python -m codec.pack ../shared/data/train runs/pack.npz

>>> import numpy as np, tempfile, pathlib
>>> from PIL import Image
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> for i in range(3):
...     Image.fromarray(np.full((40, 50, 3), 60 * i, np.uint8)).save(d / f"{i}.png")
>>> info = build_pack(d, d / "pack.npz", max_side_px=32)
>>> info["train_images"], info["val_images"]
(2, 1)
>>> [im.shape for im in load_pack(d / "pack.npz", "val")]
[(26, 32, 3)]
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["build_pack", "load_pack", "split_paths"]

# Quality 90 keeps the whole corpus under the 40 MiB a device run may carry (95 made 44 MiB).
JPEG_QUALITY = 90


def split_paths(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(train, val): every 20th image is held out for validation (never Kodak)."""
    val = paths[::20] if len(paths) >= 20 else paths[:1]
    held = set(val)
    return [p for p in paths if p not in held] or paths, val


def _jpeg(path: Path, max_side_px: int, quality: int) -> bytes:
    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = max_side_px / max(im.size)
        if scale < 1:
            size = (round(im.width * scale), round(im.height * scale))
            im = im.resize(size, Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
        return buf.getvalue()


def build_pack(
    data: str | Path, dest: str | Path, max_side_px: int = 768, quality: int = JPEG_QUALITY
) -> dict:
    """Write the pack of the images under ``data`` to ``dest``; returns counts and size."""
    from codec.data import list_images  # the one place that refuses Kodak

    train, val = split_paths(list_images(data))
    arrays = {}
    for split, paths in (("train", train), ("val", val)):
        blobs = [_jpeg(p, max_side_px, quality) for p in paths]
        arrays[f"{split}_offsets"] = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
        arrays[f"{split}_bytes"] = np.frombuffer(b"".join(blobs), np.uint8)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as f:
        np.savez(f, **arrays)
    return {
        "train_images": len(train),
        "val_images": len(val),
        "size_bytes": dest.stat().st_size,
        "max_side_px": max_side_px,
        "jpeg_quality": quality,
    }


def load_pack(path: str | Path, split: str) -> list[np.ndarray]:
    """The ``split`` ("train" or "val") images of a pack as uint8 ``[H, W, 3]`` arrays."""
    with np.load(path, allow_pickle=False) as pack:
        data, offsets = pack[f"{split}_bytes"], pack[f"{split}_offsets"]
    out = []
    for a, b in itertools.pairwise(offsets):
        with Image.open(io.BytesIO(data[a:b].tobytes())) as im:
            out.append(np.asarray(im.convert("RGB")))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="codec.pack", description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="folder of training images (never Kodak)")
    p.add_argument("dest", help="the .npz file to write")
    p.add_argument("--max-side-px", type=int, default=768, help="downscale longer sides to this")
    p.add_argument("--quality", type=int, default=JPEG_QUALITY, help="JPEG quality of the pack")
    args = p.parse_args(argv)
    info = build_pack(args.data, args.dest, args.max_side_px, args.quality)
    json.dump(info, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
