"""The index stream: which stage and latent position each index of a message belongs to.

A message's ``S * n`` indices (``S`` stages of ``n = h * w`` positions) are laid out as one
stream, and packet ``seq`` carries the stream's slots ``[seq * capacity, (seq + 1) * capacity)``,
so only the last packet of a message is partly empty (format version 2; version 1 started every
stage in a new packet, which cost a 768 x 512 picture 30 packets of 360 bytes instead of 29).
The ``order`` decides the stream:

- ``stage-major``: all of stage 1 in position order, then all of stage 2, ... A packet may end
  one stage and begin the next; every prefix of the packets still gives complete leading stages.
- ``position-major``: the positions in chunks of ``capacity``; per chunk, its positions in stage
  1, then in stage 2, ... Every packet of a full chunk carries one stage of it, as before; the
  last, shorter chunk is packed without gaps.

Everything here follows from the geometry alone, so any packet is placed without the others.

>>> stages, ranks = stream_layout("stage-major", 2, 3, 4)
>>> stages.tolist(), ranks.tolist()
([0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2])
>>> stage_seqs("stage-major", 2, 3, 4)     # packet 0 starts in stage 1, packet 1 in stage 2
((0,), (1,))
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["packet_count", "stage_seqs", "stream_layout"]


def packet_count(num_stages: int, positions: int, capacity: int) -> int:
    """Packets that carry a message of ``num_stages`` stages of ``positions`` indices.

    >>> packet_count(5, 1536, 274)      # a 768 x 512 picture at 1/16, 360-byte packets
    29
    """
    return -(-num_stages * positions // capacity)


@lru_cache(maxsize=16)
def stream_layout(
    order: str, num_stages: int, positions: int, capacity: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per stream slot: its stage (``uint8``) and its rank in the stage's position order
    (``int32``), both ``[num_stages * positions]``, read-only (cached per geometry).

    Ranks index :func:`satlink.packets.position_order`, which maps them to flat ``y * w + x``.

    >>> stages, ranks = stream_layout("position-major", 2, 3, 2)
    >>> stages.tolist(), ranks.tolist()
    ([0, 0, 1, 1, 0, 1], [0, 1, 0, 1, 2, 2])
    """
    rank = np.tile(np.arange(positions, dtype=np.int32), num_stages)
    stage = np.repeat(np.arange(num_stages, dtype=np.uint8), positions)
    if order == "position-major":
        # Stable sort by chunk keeps stage-then-rank order within each chunk.
        by_chunk = np.argsort(rank // capacity, kind="stable")
        rank, stage = rank[by_chunk], stage[by_chunk]
    elif order != "stage-major":
        raise ValueError(f"unknown order {order!r}")
    rank.setflags(write=False)
    stage.setflags(write=False)
    return stage, rank


@lru_cache(maxsize=64)
def stage_seqs(
    order: str, num_stages: int, positions: int, capacity: int
) -> tuple[tuple[int, ...], ...]:
    """Per stage, the ``seq`` of the packets whose first index belongs to it, ascending.

    A packet counts for the stage it starts in: with ``stage-major`` every index of stages
    ``< s`` travels in packets that start in them. A stage shorter than a packet's tail may
    start no packet at all (then its tuple is empty).

    >>> [len(s) for s in stage_seqs("stage-major", 5, 1536, 274)]
    [6, 6, 5, 6, 6]
    """
    stage, _ = stream_layout(order, num_stages, positions, capacity)
    starts = stage[:: int(capacity)]
    return tuple(tuple(np.flatnonzero(starts == s).tolist()) for s in range(num_stages))
