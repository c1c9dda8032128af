"""Training images: the corpus from a folder, and random crops from it.

Kodak is for evaluation only: :func:`list_images` refuses any folder that holds it.

>>> import numpy as np
>>> images = [np.zeros((40, 50, 3), np.uint8)]
>>> tuple(random_crops(images, 2, 32, np.random.default_rng(0)).shape)
(2, 3, 32, 32)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = [
    "IMAGE_SUFFIXES",
    "center_crops",
    "device_crops",
    "fit_corpus",
    "list_images",
    "load_corpus",
    "random_crops",
]

# File suffixes read as images by training, evaluation and sweeps (one list for all three).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def list_images(folder: str | Path) -> list[Path]:
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if any("kodak" in part.lower() for p in paths for part in p.parts):
        raise ValueError(f"{folder} contains a Kodak folder: Kodak is for evaluation only")
    if not paths:
        raise FileNotFoundError(f"no images under {folder}")
    return paths


def load_corpus(paths: list[Path], max_side_px: int, min_side_px: int) -> list[np.ndarray]:
    images = []
    for p in paths:
        with Image.open(p) as im:
            im = im.convert("RGB")
            scale = max_side_px / max(im.size)
            if scale < 1:
                im = im.resize(
                    (round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS
                )
            if min(im.size) >= min_side_px:
                images.append(np.asarray(im))
    return images


def fit_corpus(images: list[np.ndarray], max_side_px: int, min_side_px: int) -> list[np.ndarray]:
    """Downscale arrays to at most ``max_side_px`` and drop those under ``min_side_px``."""
    out = []
    for arr in images:
        if max(arr.shape[:2]) > max_side_px:
            im = Image.fromarray(arr)
            scale = max_side_px / max(im.size)
            size = (round(im.width * scale), round(im.height * scale))
            arr = np.asarray(im.resize(size, Image.Resampling.LANCZOS))
        if min(arr.shape[:2]) >= min_side_px:
            out.append(arr)
    return out


def _crop_plan(
    shapes: list[tuple[int, ...]], n: int, crop: int, rng: np.random.Generator
) -> list[tuple[int, int, int, bool, bool]]:
    """(image, y, x, flip left-right, flip up-down) for ``n`` crops, drawn in one order whatever
    holds the images, so a seed gives the same crops on a CPU and on an accelerator."""
    plan = []
    for _ in range(n):
        i = int(rng.integers(len(shapes)))
        y = int(rng.integers(shapes[i][0] - crop + 1))
        x = int(rng.integers(shapes[i][1] - crop + 1))
        plan.append((i, y, x, bool(rng.random() < 0.5), bool(rng.random() < 0.5)))
    return plan


def device_crops(
    images: list[torch.Tensor], n: int, crop: int, rng: np.random.Generator
) -> torch.Tensor:
    """:func:`random_crops` on ``[H, W, 3]`` uint8 tensors held on an accelerator."""
    out = []
    for i, y, x, left_right, up_down in _crop_plan([im.shape for im in images], n, crop, rng):
        patch = images[i][y : y + crop, x : x + crop]
        if left_right:
            patch = patch.flip(1)
        if up_down:
            patch = patch.flip(0)
        out.append(patch)
    return torch.stack(out).permute(0, 3, 1, 2).float().div_(255)


def random_crops(
    images: list[np.ndarray], n: int, crop: int, rng: np.random.Generator
) -> torch.Tensor:
    out = np.empty((n, crop, crop, 3), np.uint8)
    for k, (i, y, x, left_right, up_down) in enumerate(
        _crop_plan([im.shape for im in images], n, crop, rng)
    ):
        patch = images[i][y : y + crop, x : x + crop]
        out[k] = patch[:: -1 if up_down else 1, :: -1 if left_right else 1]
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255)


def center_crops(images: list[np.ndarray], crop: int) -> torch.Tensor:
    crops = []
    for img in images:
        y, x = (img.shape[0] - crop) // 2, (img.shape[1] - crop) // 2
        crops.append(img[y : y + crop, x : x + crop])
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255)
