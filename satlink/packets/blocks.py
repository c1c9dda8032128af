"""Where erasure-coding blocks lie in a message: derived from its geometry alone, never sent.

The source packets of each RVQ stage (the packets that start in it:
:func:`satlink.packets.stream.stage_seqs`; a file message: all its packets) are split into
near-equal blocks of at most :data:`MAX_BLOCK_SOURCES`. The parser needs this to place a repair
packet, the coder (:mod:`satlink.packets.fec`) to build one, and the configuration to check a
scheme's name, so it lives apart from all three.

>>> block_source_seqs(range(6, 12), 0)
(6, 7, 8, 9, 10, 11)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from satlink.packets.packet import BytesPacket, IndexPacket
from satlink.packets.stream import stage_seqs

__all__ = [
    "FEC_SCHEMES",
    "MAX_BLOCK_SOURCES",
    "PLACEMENTS",
    "SHARES",
    "block_bounds",
    "block_of",
    "block_source_seqs",
    "message_stage_seqs",
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


def block_source_seqs(stage_seqs: Sequence[int], block: int) -> tuple[int, ...]:
    """``seq`` of the source packets of one block, in share order, from the ``seq`` of the
    stage's source packets (derived, never sent).

    >>> block_source_seqs(range(300), 2)[:3]
    (200, 201, 202)
    """
    bounds = block_bounds(len(stage_seqs))
    return tuple(int(s) for s in stage_seqs[bounds[block] : bounds[block + 1]])


def message_stage_seqs(p: IndexPacket | BytesPacket) -> Sequence[Sequence[int]]:
    """Per stage, the ``seq`` of the packets that start in it (a file message: one stage)."""
    if isinstance(p, IndexPacket):
        h, w = p.latent_shape
        return stage_seqs(p.order, p.num_stages, h * w, p.capacity)
    return (range(p.total),)


def block_of(p: IndexPacket | BytesPacket) -> tuple[int, int]:
    """``(stage, block)`` of a source packet (stage 0 for a file message)."""
    stage = p.stage if isinstance(p, IndexPacket) else 0
    seqs = message_stage_seqs(p)[stage]
    chunk = bisect.bisect_left(seqs, p.seq)
    return stage, bisect.bisect_right(block_bounds(len(seqs)), chunk) - 1


def repair_count(ratio: float, k: int) -> int:
    """Repair packets for a block of ``k`` sources at ``ratio``: ``ceil(ratio * k)``.

    >>> repair_count(0.1, 4), repair_count(1.0, 1), repair_count(0.0, 9)
    (1, 1, 0)
    """
    return math.ceil(ratio * k - 1e-9) if ratio > 0 else 0
