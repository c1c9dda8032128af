"""Training checkpoints in, shipped weight files out; never code from either.

A checkpoint (``last.ckpt``) holds the model, optimizer and random states for ``--resume``; an
exported weight file holds only the tensors and what :func:`codec.zoo.load_codec` needs. Both
load with ``weights_only=True``.

    python -m codec.train export runs/main/last.ckpt codec/weights/progic-rvq-s.pt
"""

from __future__ import annotations

import pickle
import platform
from pathlib import Path

import torch
from torch import nn

from codec.model import CodecConfig

__all__ = [
    "CheckpointError",
    "average_weights",
    "export_meta",
    "export_weights",
    "load_checkpoint",
    "state_dict_cpu",
    "unpickling_reason",
]


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
    ckpt: Path, dest: Path, model_id: int = 1, name: str = "progic-rvq-s", half: bool = False
) -> dict:
    """Strip a training checkpoint down to what ``weights_only=True`` loading needs.

    ``ckpt`` may also be an exported weight file (a run's ``step_N.pt``): it is relabelled with
    ``name`` and ``model_id``, keeping its step, wall time and hardware record. ``half`` stores
    floating-point tensors as fp16 (half the file; they load into the fp32 model, so decoding
    still runs in fp32 on rounded weights).
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
    torch.save({"state_dict": state_dict, **meta}, dest)
    return meta


def _exported_weights(path: Path) -> dict | None:
    """The contents of ``path`` if it is an exported weight file, else None (a checkpoint)."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
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
