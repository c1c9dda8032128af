"""Shipped weights. Everything loads from the package with ``weights_only=True``; no network.

>>> codec = load_codec()            # the default model
>>> codec.num_stages, codec.bits_per_index
(5, 10)
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from codec.api import DEFAULT_MAX_PIXELS, Codec
from codec.model import CodecConfig, ProgressiveCodec

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_MODEL = "progic-rvq-s"
# model_id (carried in every packet header) -> weight file name
MODELS: dict[int, str] = {1: "progic-rvq-s"}


class ModelNotFoundError(LookupError):
    """No weights for the requested model name, id or path."""


def weights_path(name_or_id: str | int) -> Path:
    if isinstance(name_or_id, int):
        if name_or_id not in MODELS:
            raise ModelNotFoundError(f"unknown model id {name_or_id}; known ids: {sorted(MODELS)}")
        name_or_id = MODELS[name_or_id]
    path = Path(name_or_id)
    if path.suffix != ".pt":
        path = WEIGHTS_DIR / f"{name_or_id}.pt"
    if not path.is_file():
        raise ModelNotFoundError(f"no weights at {path}")
    return path


def load_codec(
    name_or_path: str | int | Path = DEFAULT_MODEL, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Codec:
    """Load a model by name, model id or ``.pt`` path (as written by ``codec.train export``)."""
    path = weights_path(name_or_path if not isinstance(name_or_path, Path) else str(name_or_path))
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        config = CodecConfig.from_dict(blob["config"])
        net = ProgressiveCodec(config)
        net.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise ModelNotFoundError(f"{path} is not a valid codec weight file: {exc}") from None
    return Codec(net, int(blob["model_id"]), str(blob["name"]), max_pixels=max_pixels)


@functools.cache
def default_codec() -> Codec:
    """The shipped model, loaded once per process."""
    return load_codec(DEFAULT_MODEL)
