"""Bit packing of RVQ indices, MSB first, ``bits_per_index`` bits each, vectorised with numpy.

The packetizer packs a whole message's rows in one pass (:func:`pack_rows`); the parser unpacks
with a cached gather-and-shift plan (:func:`unpack_plan`) that reads each index as one big-endian
32-bit word. :func:`pack_indices` and :func:`unpack_indices` are the one-row forms.

>>> import numpy as np
>>> from satlink.packets.bitpack import pack_indices, unpack_indices
>>> pack_indices(np.array([1, 1023, 0]), 10).hex()
'007ff000'
>>> unpack_indices(bytes.fromhex("007ff000"), 3, 10).tolist()
[1, 1023, 0]
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from satlink.packets.errors import PacketTruncatedError
from satlink.packets.format import check_bits

__all__ = ["pack_indices", "pack_rows", "unpack_at", "unpack_indices", "unpack_plan"]


def pack_rows(rows: np.ndarray, bits_per_index: int, out: np.ndarray) -> np.ndarray:
    """Bit-pack ``[P, n]`` indices MSB first into the zeroed ``[P, payload_bytes]`` uint8
    array ``out`` (returned); bits past the last index stay zero."""
    p, n = rows.shape
    b = bits_per_index
    group = 8 // math.gcd(b, 8)  # indices per whole number of bytes (4 for 10-bit indices)
    group_bits = group * b
    if group_bits > 64:
        # b = 9, 11, 13, 15: a group spans more than 64 bits; go through one byte per bit.
        bits = np.unpackbits(rows.astype(">u2").view(np.uint8).reshape(p, n, 2), axis=2)
        packed = np.packbits(bits[:, :, 16 - b :].reshape(p, n * b), axis=1)
        keep = min(packed.shape[1], out.shape[1])
        out[:, :keep] = packed[:, :keep]
        return out
    # Fast path (b = 10 among others): each group of indices becomes one uint64 with the
    # group's bits at the top, MSB first (a dot product: the fields do not overlap), and its
    # leading group_bits / 8 big-endian bytes are copied out.
    groups = -(-n // group)
    padded = np.zeros((p, groups * group), dtype=np.uint64)
    padded[:, :n] = rows
    weights = np.uint64(1) << np.arange(64 - b, 63 - group_bits, -b, dtype=np.uint64)
    words = padded.reshape(p, groups, group) @ weights
    nbytes = group_bits // 8
    big_endian = words.astype(">u8").view(np.uint8).reshape(p, groups, 8)
    # Zero indices that pad the last group only add zero bits, so cutting them is safe.
    full = min(groups, out.shape[1] // nbytes)
    out[:, : full * nbytes].reshape(p, full, nbytes)[...] = big_endian[:, :full, :nbytes]
    rest = min(out.shape[1] - full * nbytes, (groups - full) * nbytes)
    if rest > 0:
        out[:, full * nbytes : full * nbytes + rest] = big_endian[:, full, :rest]
    return out


@lru_cache(maxsize=256)
def unpack_plan(
    count: int, bits_per_index: int, offset: int
) -> tuple[np.ndarray, np.ndarray, np.uint32]:
    """``(gather, shifts, mask)`` that read ``count`` indices starting at byte ``offset``
    (read-only arrays, cached: every packet of a message shares them)."""
    # For index i starting at bit s = i*b: read the 4 bytes from byte s//8 as a big-endian
    # uint32, then shift right by 32 - b - s%8 and mask. Needs b + 7 <= 32 and 3 readable
    # bytes after the last start byte, which the 4-byte CRC trailer always provides.
    starts = np.arange(count, dtype=np.int64) * bits_per_index
    gather = (offset + (starts >> 3))[:, None] + np.arange(4)
    shifts = (32 - bits_per_index - (starts & 7)).astype(np.uint32)
    gather.setflags(write=False)
    shifts.setflags(write=False)
    return gather, shifts, np.uint32((1 << bits_per_index) - 1)


def unpack_at(data: bytes, offset: int, count: int, bits_per_index: int) -> np.ndarray:
    """``count`` indices from byte ``offset`` of ``data`` (read-only uint16); at least 3 bytes
    must follow the last index's first byte."""
    gather, shifts, mask = unpack_plan(count, bits_per_index, offset)
    words = np.frombuffer(data, dtype=np.uint8)[gather].view(">u4").ravel()
    out = ((words >> shifts) & mask).astype(np.uint16)
    out.flags.writeable = False
    return out


def pack_indices(indices: np.ndarray, bits_per_index: int) -> bytes:
    """Bit-pack indices MSB first, ``bits_per_index`` bits each, zero-padded to whole bytes.

    >>> pack_indices(np.array([1, 1023, 0]), 10).hex()
    '007ff000'
    """
    check_bits(bits_per_index)
    idx = np.asarray(indices).ravel()
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= 1 << bits_per_index):
        raise ValueError(f"indices must lie in [0, {1 << bits_per_index})")
    out = np.zeros((1, -(-(idx.size * bits_per_index) // 8)), dtype=np.uint8)
    return pack_rows(idx.astype(np.uint16)[None], bits_per_index, out).tobytes()


def unpack_indices(data: bytes, count: int, bits_per_index: int) -> np.ndarray:
    """Inverse of :func:`pack_indices`: the first ``count`` indices of ``data`` (uint16).

    >>> unpack_indices(bytes.fromhex("007ff000"), 3, 10).tolist()
    [1, 1023, 0]
    """
    check_bits(bits_per_index)
    need = -(-(count * bits_per_index) // 8)
    if len(data) < need:
        raise PacketTruncatedError(
            f"{count} indices of {bits_per_index} bits need {need} bytes, got {len(data)}"
        )
    # The 4-byte read window may run up to 3 bytes past the last index: pad with zeros.
    return unpack_at(bytes(data[:need]) + bytes(3), 0, count, bits_per_index).copy()
