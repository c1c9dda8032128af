"""Shipped weights. Everything loads from the package with ``weights_only=True``; no network.

>>> codec = load_codec()            # the default model
>>> codec.num_stages, codec.bits_per_index
(5, 10)
"""

from __future__ import annotations

import functools
import pickle
import zipfile
from pathlib import Path

import torch

from codec.api import DEFAULT_MAX_PIXELS, Codec
from codec.checkpoint import PACKAGE_WEIGHTS, load_weights, unpickling_reason
from codec.model import CodecConfig, ProgressiveCodec

WEIGHTS_DIR = PACKAGE_WEIGHTS
DEFAULT_MODEL = "progic-rvq-v13"
# model_id (carried in every packet header) -> weight file name
MODELS: dict[int, str] = {
    6: "progic-rvq-v6",
    7: "progic-rvq-v7",
    8: "progic-rvq-v8",
    9: "progic-rvq-v9",
    10: "progic-rvq-v10",
    11: "progic-rvq-v11",
    12: "progic-rvq-v12",
    13: "progic-rvq-v13",
}
# Releases whose weights left the package to keep it under 20 MB. Each file stays in the git
# history at the given commit; ``load_codec`` takes its path, and a packet naming its id is
# refused with that recipe rather than an "unknown model".
RETIRED: dict[int, tuple[str, str]] = {
    1: ("progic-rvq-s", "5c10cae"),
    2: ("progic-rvq-v2", "96b48ff"),
    3: ("progic-rvq-v3", "5772458"),
    4: ("progic-rvq-v4", "f96fe80"),
    5: ("progic-rvq-v5", "f22a211"),
}


class ModelNotFoundError(LookupError):
    """No weights for the requested model name, id or path."""


def weights_path(name_or_id: str | int) -> Path:
    retired_id = next((i for i, (n, _) in RETIRED.items() if name_or_id in (i, n)), None)
    if retired_id is not None:
        name, commit = RETIRED[retired_id]
        raise ModelNotFoundError(
            f"model {retired_id} ({name}) is retired from the package; its weights are in git: "
            f"git show {commit}:codec/weights/{name}.pt > {name}.pt, then pass that path"
        )
    if isinstance(name_or_id, int):
        if name_or_id == 0:
            raise ModelNotFoundError(
                "model id 0 marks weights that are not a release (a training export, a test "
                "model): decode with the weight file that made the packets"
            )
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
    if path.stat().st_size and not zipfile.is_zipfile(path):
        # torch.save has written zip archives since torch 1.6; anything else is not ours.
        raise ModelNotFoundError(
            f"{path} is not a codec weight file: not a PyTorch archive, or cut short"
        )
    try:
        blob = load_weights(path)
        if not isinstance(blob, dict) or not {"config", "state_dict", "model_id"} <= set(blob):
            raise KeyError("it lacks the config, state_dict and model_id entries")
        config = CodecConfig.from_dict(blob["config"])
        bad = [
            k
            for k, v in blob["state_dict"].items()
            if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()
        ]
        if bad:  # NaN or inf weights decode to black pictures: refuse them here, by name
            raise ValueError(f"tensor {bad[0]!r} holds NaN or infinite values")
        net = ProgressiveCodec(config)
        net.load_state_dict(blob["state_dict"])
    except EOFError:
        raise ModelNotFoundError(f"{path} is not a codec weight file: empty or cut short") from None
    except pickle.UnpicklingError as exc:
        why = unpickling_reason(exc, "file")
        raise ModelNotFoundError(f"{path} is not a codec weight file: {why}") from None
    except (KeyError, RuntimeError, TypeError, ValueError, AttributeError) as exc:
        reason = (str(exc).strip("'\"").splitlines() or [""])[0][:200] or type(exc).__name__
        raise ModelNotFoundError(f"{path} is not a valid codec weight file: {reason}") from None
    name = str(blob.get("name") or path.stem)
    return Codec(net, int(blob["model_id"]), name, max_pixels=max_pixels)


@functools.cache
def default_codec() -> Codec:
    """The shipped model, loaded once per process."""
    return load_codec(DEFAULT_MODEL)
