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

Everything here follows from the geometry alone, in closed form per slot, so any packet is
placed without the others and nothing the size of a message is built or kept for it (a header
may name a 16-stage, 2^18-position geometry).

>>> stages, ranks = stream_layout("stage-major", 2, 3, 4)
>>> stages.tolist(), ranks.tolist()
([0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2])
>>> [s.tolist() for s in stage_seqs("stage-major", 2, 3, 4)]   # packet 0 starts stage 1
[[0], [1]]
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = [
    "cached_position_order",
    "packet_count",
    "position_order",
    "slot_offsets",
    "slot_stages_ranks",
    "stage_seqs",
    "stream_layout",
]


def packet_count(num_stages: int, positions: int, capacity: int) -> int:
    """Packets that carry a message of ``num_stages`` stages of ``positions`` indices.

    >>> packet_count(5, 1536, 274)      # a 768 x 512 picture at 1/16, 360-byte packets
    29
    """
    return -(-num_stages * positions // capacity)


def slot_stages_ranks(
    order: str, num_stages: int, positions: int, capacity: int, slots: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Stage and rank in the stage's position order (:func:`position_order`) of each of the
    stream ``slots`` (``int64`` arrays shaped like ``slots``).

    >>> [a.tolist() for a in slot_stages_ranks("position-major", 2, 3, 2, np.arange(6))]
    [[0, 0, 1, 1, 0, 1], [0, 1, 0, 1, 2, 2]]
    """
    shape = np.shape(slots)
    slots = np.asarray(slots, dtype=np.int64).reshape(-1)
    if order == "stage-major":
        stage, rank = np.divmod(slots, positions)
    elif order == "position-major":
        full = positions // capacity  # chunks of a whole packet's worth of positions
        span = num_stages * capacity  # slots per full chunk: one packet per stage
        chunk, within = np.divmod(slots, span)
        stage, rank = np.divmod(within, capacity)
        rank += chunk * capacity
        last = positions - full * capacity  # positions in the last, shorter chunk (0: none)
        if last:
            tail = slots >= full * span
            stage_t, rank_t = np.divmod(slots[tail] - full * span, last)
            stage[tail], rank[tail] = stage_t, rank_t + full * capacity
    else:
        raise ValueError(f"unknown order {order!r}")
    return stage.reshape(shape), rank.reshape(shape)


def stream_layout(
    order: str, num_stages: int, positions: int, capacity: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stage and rank of every slot of a message's stream, ``[num_stages * positions]`` each.

    >>> [a.tolist() for a in stream_layout("position-major", 2, 3, 2)]
    [[0, 0, 1, 1, 0, 1], [0, 1, 0, 1, 2, 2]]
    """
    slots = np.arange(num_stages * positions, dtype=np.int64)
    return slot_stages_ranks(order, num_stages, positions, capacity, slots)


@lru_cache(maxsize=16)  # at most 16 x 0.5 MB, whatever geometries hostile headers name
def stage_seqs(
    order: str, num_stages: int, positions: int, capacity: int
) -> tuple[np.ndarray, ...]:
    """Per stage, the ``seq`` of the packets whose first index belongs to it, ascending
    (read-only ``int64`` arrays; cached per geometry, at most 0.5 MB each).

    A packet counts for the stage it starts in: with ``stage-major`` every index of stages
    ``< s`` travels in packets that start in them. A stage shorter than a packet's tail may
    start no packet at all (then its array is empty).

    >>> [len(s) for s in stage_seqs("stage-major", 5, 1536, 274)]
    [6, 6, 5, 6, 6]
    """
    starts = np.arange(packet_count(num_stages, positions, capacity), dtype=np.int64) * capacity
    first = slot_stages_ranks(order, num_stages, positions, capacity, starts)[0]
    out = []
    for s in range(num_stages):
        seqs = np.flatnonzero(first == s)
        seqs.setflags(write=False)
        out.append(seqs)
    return tuple(out)


@lru_cache(maxsize=64)
def cached_position_order(h: int, w: int, interleave: bool) -> np.ndarray:
    """:func:`position_order` without the argument checks (read-only, cached per geometry):
    every packet's placement (:func:`slot_offsets`) asks for it."""
    n = h * w
    if not interleave:
        order = np.arange(n, dtype=np.intp)
    else:
        # Ordered-dither (Bayer) rank of each position on the enclosing 2^L x 2^L grid: the
        # lowest coordinate bits decide the most significant rank digit, so any run of
        # consecutive ranks is spread evenly over the image, and the first half of all ranks
        # is one checkerboard colour (no two 4-neighbours). Positions outside h x w are skipped.
        levels = max(1, (max(h, w) - 1).bit_length())
        y, x = np.divmod(np.arange(n, dtype=np.int64), w)
        rank = np.zeros(n, dtype=np.int64)
        for level in range(levels):  # loop over bit levels (<= 18), vectorised over positions
            yb, xb = (y >> level) & 1, (x >> level) & 1
            rank |= (((xb ^ yb) << 1) | yb) << (2 * (levels - 1 - level))
        order = np.argsort(rank, kind="stable").astype(np.intp)
    order.setflags(write=False)
    return order


def position_order(latent_shape: tuple[int, int], *, interleave: bool = False) -> np.ndarray:
    """Flat latent positions (``y * w + x``) in the order packets carry them within a stage.

    A stage's indices travel in the stream in this order (their ranks). Without interleaving
    that is raster order; with it, a deterministic ordered-dither permutation, so that a lost
    packet leaves scattered single holes instead of a band of rows.

    >>> position_order((2, 2)).tolist(), position_order((2, 2), interleave=True).tolist()
    ([0, 1, 2, 3], [0, 3, 1, 2])
    """
    h, w = (int(v) for v in latent_shape)
    if h < 1 or w < 1:
        raise ValueError(f"latent_shape must be positive, got {latent_shape}")
    return cached_position_order(h, w, bool(interleave))


def slot_offsets(
    order: str,
    num_stages: int,
    h: int,
    w: int,
    interleave: bool,
    capacity: int,
    first: int = 0,
    count: int | None = None,
) -> np.ndarray:
    """Flat offset ``stage * h * w + y * w + x`` into the message's ``[num_stages, h, w]``
    index array of each stream slot ``first .. first + count - 1`` (default: all): what the
    sender gathers and the receiver scatters, one 1-D index each.

    >>> slot_offsets("position-major", 2, 1, 3, False, 2).tolist()
    [0, 1, 3, 4, 2, 5]
    >>> slot_offsets("position-major", 2, 1, 3, False, 2, first=2, count=3).tolist()
    [3, 4, 2]
    """
    n = h * w
    end = num_stages * n if count is None else first + count
    if order == "stage-major" and not interleave:
        return np.arange(first, end, dtype=np.intp)  # the stream is the array itself
    stage, rank = slot_stages_ranks(
        order, num_stages, n, capacity, np.arange(first, end, dtype=np.int64)
    )
    return (stage * n + cached_position_order(h, w, interleave)[rank]).astype(np.intp)
