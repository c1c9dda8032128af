"""Training checkpoints in, shipped weight files out; never code from either.

A checkpoint (``last.ckpt``) holds the model, optimizer and random states for ``--resume``; an
exported weight file holds only the tensors and what :func:`codec.zoo.load_codec` needs. Both
load with ``weights_only=True``.

    python -m codec.train export runs/main/last.ckpt codec/weights/my-model.pt
"""

from __future__ import annotations

import hashlib
import lzma
import math
import pickle
import platform
import zlib
from pathlib import Path
from typing import Any

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
    "load_weights",
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
# A delta-packed file (``export --delta-from``, for older releases) stores each tensor's bytes
# XOR the same tensor of a base release: a fine-tune leaves most sign and exponent bits as they
# were, so those planes become zeros and 4.5 MB become about 3.4. Still lossless; the base is
# found by name beside the file or in the package and checked by a SHA-256 of what was XORed.
DELTA_PACKING = "byteplanes-xor-lzma-1"
PACKAGE_WEIGHTS = Path(__file__).parent / "weights"
MAX_BASE_CHAIN = 8  # a delta's base may be a delta itself, this many deep at most
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
    model_id: int = 0,
    name: str = "custom",
    half: bool = False,
    pack: bool = False,
    delta_from: Path | None = None,
) -> dict:
    """Strip a training checkpoint down to what ``weights_only=True`` loading needs.

    ``ckpt`` may also be an exported weight file (a run's ``step_N.pt``): it is relabelled with
    ``name`` and ``model_id``, keeping its step, wall time and hardware record. ``half`` stores
    floating-point tensors as fp16 (half the file; they load into the fp32 model, so decoding
    still runs in fp32 on rounded weights). ``pack`` stores them losslessly compressed
    (:func:`pack_tensors`), without the statistics training re-derives; ``delta_from`` (a
    weight file, implies ``pack``) stores them as a difference from that release's tensors.
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
    if delta_from is not None:
        base = load_weights(Path(delta_from))["state_dict"]
        tensors = pack_tensors(state_dict, base, Path(delta_from).stem)
    else:
        tensors = pack_tensors(state_dict) if pack else {"state_dict": state_dict}
    torch.save({**tensors, **meta}, dest)
    return meta


def pack_tensors(
    state: dict[str, torch.Tensor], base: dict[str, torch.Tensor] | None = None, base_name: str = ""
) -> dict:
    """``state`` -> the ``packed`` / ``layout`` / ``packing`` entries of a packed weight file;
    with ``base`` (a release's tensors, named ``base_name``) each tensor of the same shape and
    dtype is stored XOR its base, and the entries name the base and its checksum."""
    layout, planes = [], []
    digest = hashlib.sha256()
    for key, value in state.items():
        if key in LEFT_OUT:
            continue
        value = value.detach().cpu().contiguous()
        raw = value.reshape(-1).view(torch.uint8)
        ref = base.get(key) if base is not None else None
        xor = ref is not None and ref.shape == value.shape and ref.dtype == value.dtype
        if xor:
            raw = raw ^ _digested(digest, key, ref)
        planes.append(raw.reshape(-1, value.element_size()).T.contiguous())
        entry = [key, list(value.shape), str(value.dtype).removeprefix("torch.")]
        layout.append(entry if base is None else [*entry, int(xor)])
    raw = torch.cat([p.reshape(-1) for p in planes]).numpy().tobytes() if planes else b""
    if base is None:
        packed, extra = zlib.compress(raw, 9), {"packing": PACKING}
    else:
        packed = lzma.compress(raw, preset=9)
        extra = {"packing": DELTA_PACKING, "base": base_name, "base_sha256": digest.hexdigest()}
    packed_tensor = torch.frombuffer(bytearray(packed), dtype=torch.uint8)
    return {"packed": packed_tensor, "layout": layout, **extra}


def _digested(digest: hashlib._Hash, key: str, ref: torch.Tensor) -> torch.Tensor:
    """A base tensor's raw bytes, folded into the checksum that ties a delta to its base (the
    packer and the loader fold the same keys in the same order)."""
    raw = ref.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
    digest.update(key.encode())
    digest.update(raw.numpy().tobytes())
    return raw


def load_weights(path: Path, _depth: int = 0) -> Any:
    """``torch.load(path, weights_only=True)`` with packed tensors unpacked (:func:`unpacked`);
    a delta's base is looked for beside ``path``, then among the package's weights."""
    return unpacked(torch.load(path, map_location="cpu", weights_only=True), path, _depth)


# Unpacked bases by (path, mtime, size), read only (they are XOR keys): loading every release of
# a chain (`satlink codec models`, the release gate) would otherwise unpack the newer ones again
# for each older file, quadratic in the chain's length.
_BASES: dict[tuple[str, int, int], dict[str, torch.Tensor]] = {}


def _base_state(blob: dict, near: Path | None, depth: int) -> dict[str, torch.Tensor]:
    name = blob.get("base")
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise ValueError(f"a delta-packed file must name its base release, not {name!r}")
    if depth >= MAX_BASE_CHAIN:
        raise ValueError(f"its chain of base releases is deeper than {MAX_BASE_CHAIN} (a loop?)")
    places = ([near.parent] if near is not None else []) + [PACKAGE_WEIGHTS]
    found = [d / f"{name}.pt" for d in places if (d / f"{name}.pt").is_file()]
    if not found:
        raise ValueError(
            f"it is stored as a difference from {name}.pt, which is neither beside it nor in the "
            "package"
        )
    stat = found[0].stat()
    key = (str(found[0].resolve()), stat.st_mtime_ns, stat.st_size)
    if key in _BASES:
        return _BASES[key]
    try:
        base = load_weights(found[0], depth + 1)
    except (EOFError, RuntimeError, pickle.UnpicklingError) as exc:
        # named here: the caller would otherwise blame the delta file for its base
        raise ValueError(f"its base {found[0]} cannot be read ({type(exc).__name__})") from None
    if not isinstance(base, dict) or not isinstance(base.get("state_dict"), dict):
        raise ValueError(f"its base {found[0]} is not a weight file")
    if len(_BASES) >= MAX_BASE_CHAIN:
        _BASES.pop(next(iter(_BASES)))
    _BASES[key] = base["state_dict"]
    return base["state_dict"]


def unpacked(blob: Any, near: Path | None = None, _depth: int = 0) -> Any:
    """A loaded weight file with its ``state_dict`` as tensors, whether packed or not.

    ``near`` is the file's path: a delta-packed file's base is looked for beside it first.
    Raises ``ValueError`` naming what is wrong with a damaged or unknown packing or base.
    """
    if not isinstance(blob, dict) or "packed" not in blob:
        return blob
    packing = blob.get("packing")
    if packing not in (PACKING, DELTA_PACKING):
        raise ValueError(
            f"unknown tensor packing {packing!r} (expected {PACKING} or {DELTA_PACKING})"
        )
    try:
        data = blob["packed"].numpy().tobytes()
        raw = zlib.decompress(data) if packing == PACKING else lzma.decompress(data)
    except (zlib.error, lzma.LZMAError, AttributeError) as exc:
        raise ValueError(f"packed tensors are damaged ({exc})") from None
    base = _base_state(blob, near, _depth) if packing == DELTA_PACKING else {}
    digest = hashlib.sha256()
    flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0)
    state, at = {}, 0
    for key, shape, dtype, *flags in blob["layout"]:
        if dtype not in _DTYPES:
            raise ValueError(f"tensor {key!r} has an unknown dtype {dtype!r}")
        dt = getattr(torch, dtype)
        size = torch.empty((), dtype=dt).element_size()
        n = math.prod(shape) * size
        if at + n > len(flat):
            raise ValueError("packed tensors are shorter than their layout says")
        values = flat[at : at + n].reshape(size, -1).T.contiguous().reshape(-1)
        if flags and flags[0]:
            ref = base.get(key)
            if ref is None or list(ref.shape) != list(shape) or ref.dtype != dt:
                raise ValueError(f"its base {blob['base']}.pt lacks tensor {key!r} as it was")
            values = values ^ _digested(digest, key, ref)
        state[key] = values.view(dt).reshape(shape)
        at += n
    if at != len(flat):
        raise ValueError("packed tensors are longer than their layout says")
    if packing == DELTA_PACKING and digest.hexdigest() != blob.get("base_sha256"):
        raise ValueError(
            f"its base {blob['base']}.pt is not the file it was made from (checksum differs)"
        )
    if "rvq.codebooks" in state and "rvq.ema_count" in state:
        ResidualVQ.derive_statistics(state)
    skip = ("packed", "layout", "packing", "base", "base_sha256")
    meta = {k: v for k, v in blob.items() if k not in skip}
    return {**meta, "state_dict": state}


def _exported_weights(path: Path) -> dict | None:
    """The contents of ``path`` if it is an exported weight file, else None (a checkpoint)."""
    try:
        blob = load_weights(path)
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
    # normalised: a file written before a CodecConfig field existed has its default
    configs = {repr(CodecConfig.from_dict(b["config"])) for b in blobs}
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
