"""Where erasure-coding blocks lie in a message: derived from its geometry alone, never sent.

Each RVQ stage (a file message: the whole file) is split into near-equal blocks of at most
:data:`MAX_BLOCK_SOURCES` source packets. The parser needs this to place a repair packet, the
coder (:mod:`satlink.packets.fec`) to build one, and the configuration to check a scheme's
name, so it lives apart from all three.

>>> block_source_seqs(PayloadKind.INDICES, "stage-major", 5, 10, 1, 0)
(2, 3)
"""

from __future__ import annotations

import bisect
import math

from satlink.packets.format import PayloadKind
from satlink.packets.packet import BytesPacket, IndexPacket

__all__ = [
    "FEC_SCHEMES",
    "MAX_BLOCK_SOURCES",
    "PLACEMENTS",
    "SHARES",
    "block_bounds",
    "block_of",
    "block_source_seqs",
    "repair_count",
]

FEC_SCHEMES: tuple[str, ...] = ("none", "reed-solomon")
# Where repair packets go in the send order: right after their block's last source packet,
# all after the last source packet, or spread evenly between the block and the end.
PLACEMENTS: tuple[str, ...] = ("after-block", "end", "spread")
MAX_BLOCK_SOURCES = 128  # sources per block; with up to 255 - k repairs (8-bit share number)
SHARES = 256  # zfec's m: repair share j is the same row of the code for every m > j


def block_bounds(count: int) -> list[int]:
    """Split ``count`` source packets into near-equal blocks of at most
    :data:`MAX_BLOCK_SOURCES`; return the ``nb + 1`` bounds (block ``j`` is
    ``[bounds[j], bounds[j + 1])``).

    >>> block_bounds(6), block_bounds(300)
    ([0, 6], [0, 100, 200, 300])
    """
    nb = max(1, -(-count // MAX_BLOCK_SOURCES))
    return [j * count // nb for j in range(nb + 1)]


def block_source_seqs(
    kind: PayloadKind, order: str, num_stages: int, total: int, stage: int, block: int
) -> tuple[int, ...]:
    """``seq`` of the source packets of one block, in share order (derived, never sent).

    >>> block_source_seqs(PayloadKind.INDICES, "position-major", 5, 10, 1, 0)
    (1, 6)
    """
    per_stage = total // num_stages if kind == PayloadKind.INDICES else total
    bounds = block_bounds(per_stage)
    chunks = range(bounds[block], bounds[block + 1])
    if kind == PayloadKind.INDICES and order == "position-major":
        return tuple(c * num_stages + stage for c in chunks)
    if kind == PayloadKind.INDICES:
        return tuple(stage * per_stage + c for c in chunks)
    return tuple(chunks)


def block_of(p: IndexPacket | BytesPacket) -> tuple[int, int]:
    """``(stage, block)`` of a source packet (stage 0 for a file message)."""
    if isinstance(p, IndexPacket):
        pps = p.total // p.num_stages
        chunk = p.seq // p.num_stages if p.order == "position-major" else p.seq - p.stage * pps
        stage, count = p.stage, pps
    else:
        stage, chunk, count = 0, p.seq, p.total
    return stage, bisect.bisect_right(block_bounds(count), chunk) - 1


def repair_count(ratio: float, k: int) -> int:
    """Repair packets for a block of ``k`` sources at ``ratio``: ``ceil(ratio * k)``.

    >>> repair_count(0.1, 4), repair_count(1.0, 1), repair_count(0.0, 9)
    (1, 1, 0)
    """
    return math.ceil(ratio * k - 1e-9) if ratio > 0 else 0
