"""Training checkpoints in, shipped weight files out; never code from either.

A checkpoint (``last.ckpt``) holds the model, optimizer and random states for ``--resume``; an
exported weight file holds only the tensors and what :func:`codec.zoo.load_codec` needs. Both
load with ``weights_only=True``.

    python -m codec.train export runs/main/last.ckpt codec/weights/progic-rvq-s.pt
"""

from __future__ import annotations

import math
import pickle
import platform
import zlib
from pathlib import Path

import torch
from torch import nn

from codec.model import CodecConfig
from codec.quantizer import ResidualVQ

__all__ = [
    "CheckpointError",
    "average_weights",
    "export_meta",
    "export_weights",
    "load_checkpoint",
    "pack_tensors",
    "state_dict_cpu",
    "unpacked",
    "unpickling_reason",
]

# A packed weight file (``export --pack``, used for the shipped releases) stores its tensors as
# one deflated byte string with each tensor's bytes regrouped into planes (every value's first
# byte, then every value's second...). An fp16 weight keeps its sign and exponent in one byte of
# the two, and that plane deflates where the interleaved bytes do not: 5.2 MB of tensors become
# 4.5 MB. Lossless: the same tensors come back.
PACKING = "byteplanes-zlib-1"
# Training statistics a packed file leaves out; ResidualVQ.derive_statistics re-derives them.
LEFT_OUT = ("rvq.ema_sum", "rvq.steps_unused")
_DTYPES = {"float16", "bfloat16", "float32", "float64", "int32", "int64", "uint8", "bool"}


class CheckpointError(ValueError):
    """A training checkpoint that cannot be used; the message names the file and the reason."""


def unpickling_reason(exc: pickle.UnpicklingError, kind: str) -> str:
    """Why ``torch.load(..., weights_only=True)`` refused a file, in words for a user."""
    if "Weights only load failed" in str(exc):
        return (
            "it holds Python objects besides tensors, refused because loading them could run code"
        )
    return f"not a PyTorch {kind}"


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors, numbers and strings, never code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        st = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: {unpickling_reason(exc, 'checkpoint')}") from None
    except (EOFError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint, or cut short ({exc})") from None
    missing = {"model", "opt", "step", "config"} - set(st if isinstance(st, dict) else ())
    if missing:
        raise CheckpointError(f"{path}: not a codec.train checkpoint (lacks {sorted(missing)})")
    return st


def state_dict_cpu(net: nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().to("cpu", memory_format=torch.contiguous_format).contiguous()
        for k, v in net.state_dict().items()
    }


def export_meta(st: dict, model_id: int, name: str) -> dict:
    """What an exported weight file records beside its tensors, from a checkpoint's state."""
    return {
        "name": name,
        "model_id": model_id,
        "config": CodecConfig.from_dict(st["config"]).to_dict(),
        "step": st.get("prior_steps", 0) + st["step"],
        "train_wall_s": st.get("prior_wall_s", 0.0) + st["wall_s"],
        # Threads as trained (0 = torch's default), not as this export process runs.
        "hardware": f"{platform.processor() or platform.machine()}, "
        f"{st['train_config'].get('threads', 0)} threads, "
        f"{st['train_config'].get('device', 'cpu')}, torch {torch.__version__}",
    }


def export_weights(
    ckpt: Path,
    dest: Path,
    model_id: int = 1,
    name: str = "progic-rvq-s",
    half: bool = False,
    pack: bool = False,
) -> dict:
    """Strip a training checkpoint down to what ``weights_only=True`` loading needs.

    ``ckpt`` may also be an exported weight file (a run's ``step_N.pt``): it is relabelled with
    ``name`` and ``model_id``, keeping its step, wall time and hardware record. ``half`` stores
    floating-point tensors as fp16 (half the file; they load into the fp32 model, so decoding
    still runs in fp32 on rounded weights). ``pack`` stores them losslessly compressed
    (:func:`pack_tensors`), without the statistics training re-derives.
    """
    weights = _exported_weights(Path(ckpt))
    if weights is not None:
        tensors = weights["state_dict"]
        meta = {k: v for k, v in weights.items() if k not in ("state_dict", "stored_dtype")}
        meta.update(name=name, model_id=model_id)
    else:
        st = load_checkpoint(ckpt)
        tensors, meta = st["model"], export_meta(st, model_id, name)
    state_dict = {
        k: (v.half() if half and v.is_floating_point() else v).contiguous()
        for k, v in tensors.items()
    }
    meta = {**meta, "stored_dtype": "float16" if half else "float32"}
    tensors = pack_tensors(state_dict) if pack else {"state_dict": state_dict}
    torch.save({**tensors, **meta}, dest)
    return meta


def pack_tensors(state: dict[str, torch.Tensor]) -> dict:
    """``state`` -> the ``packed`` / ``layout`` / ``packing`` entries of a packed weight file."""
    layout, planes = [], []
    for key, value in state.items():
        if key in LEFT_OUT:
            continue
        value = value.detach().cpu().contiguous()
        size = value.element_size()
        planes.append(value.reshape(-1).view(torch.uint8).reshape(-1, size).T.contiguous())
        layout.append([key, list(value.shape), str(value.dtype).removeprefix("torch.")])
    raw = torch.cat([p.reshape(-1) for p in planes]).numpy().tobytes() if planes else b""
    packed = torch.frombuffer(bytearray(zlib.compress(raw, 9)), dtype=torch.uint8)
    return {"packed": packed, "layout": layout, "packing": PACKING}


def unpacked(blob: dict) -> dict:
    """A loaded weight file with its ``state_dict`` as tensors, whether packed or not.

    Raises ``ValueError`` naming what is wrong with a damaged or unknown packing.
    """
    if not isinstance(blob, dict) or "packed" not in blob:
        return blob
    if blob.get("packing") != PACKING:
        raise ValueError(f"unknown tensor packing {blob.get('packing')!r} (expected {PACKING})")
    try:
        raw = zlib.decompress(blob["packed"].numpy().tobytes())
    except (zlib.error, AttributeError) as exc:
        raise ValueError(f"packed tensors are damaged ({exc})") from None
    flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0)
    state, at = {}, 0
    for key, shape, dtype in blob["layout"]:
        if dtype not in _DTYPES:
            raise ValueError(f"tensor {key!r} has an unknown dtype {dtype!r}")
        dt = getattr(torch, dtype)
        size = torch.empty((), dtype=dt).element_size()
        n = math.prod(shape) * size
        if at + n > len(flat):
            raise ValueError("packed tensors are shorter than their layout says")
        planes = flat[at : at + n].reshape(size, -1)
        state[key] = planes.T.contiguous().view(dt).reshape(shape)
        at += n
    if at != len(flat):
        raise ValueError("packed tensors are longer than their layout says")
    if "rvq.codebooks" in state and "rvq.ema_count" in state:
        ResidualVQ.derive_statistics(state)
    meta = {k: v for k, v in blob.items() if k not in ("packed", "layout", "packing")}
    return {**meta, "state_dict": state}


def _exported_weights(path: Path) -> dict | None:
    """The contents of ``path`` if it is an exported weight file, else None (a checkpoint)."""
    try:
        blob = unpacked(torch.load(path, map_location="cpu", weights_only=True))
    except Exception:  # load_checkpoint then names what is wrong with the file
        return None
    if isinstance(blob, dict) and {"state_dict", "model_id", "config"} <= set(blob):
        return blob
    return None


def average_weights(paths: list[Path], dest: Path, half: bool = False) -> dict:
    """Average exported weight files of one run (``step_N.pt``) into one, as stochastic weight
    averaging does at the end of a schedule.

    The network's parameters are averaged; the quantizer's codebooks and their statistics
    (``rvq.*``) come from the newest file: a code slot that was revived in between holds
    unrelated vectors in different files, so averaging them would make codes nobody chose.
    """
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise CheckpointError(f"no weight file at {', '.join(missing)}")
    blobs = [_exported_weights(Path(p)) for p in paths]
    bad = [str(p) for p, b in zip(paths, blobs, strict=True) if b is None]
    if bad or not blobs:
        raise CheckpointError(f"not exported weight files: {bad or 'none given'}")
    configs = {repr(sorted(b["config"].items())) for b in blobs}
    if len(configs) > 1:
        raise CheckpointError("the files are of different model shapes; average one run's exports")
    newest = max(blobs, key=lambda b: b.get("step", 0))
    state = {}
    for key, value in newest["state_dict"].items():
        if key.startswith("rvq.") or not value.is_floating_point():
            state[key] = value
        else:
            state[key] = torch.stack([b["state_dict"][key].float() for b in blobs]).mean(0)
        if half and state[key].is_floating_point():
            state[key] = state[key].half()
    meta = {k: v for k, v in newest.items() if k not in ("state_dict", "stored_dtype")}
    meta["averaged_steps"] = sorted(int(b.get("step", 0)) for b in blobs)
    meta["stored_dtype"] = "float16" if half else "float32"
    torch.save({"state_dict": state, **meta}, dest)
    return meta
