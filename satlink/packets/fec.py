"""Packet-level erasure coding: systematic Reed-Solomon (``zfec``) over blocks of packets.

The source packets are the message's packets, unchanged; repair packets (payload kinds 2 and 3,
``docs/PACKET_FORMAT.md``) follow with the same header prefix and CRC-32C, so every packet is
checked and placed on its own. Blocks follow from the message geometry alone: each RVQ stage (a
file message: the whole file) is split into blocks of at most :data:`MAX_BLOCK_SOURCES` packets,
and a block of ``k`` sources with ``r`` repairs is recovered from **any** ``k`` of its ``k + r``
packets (Reed-Solomon is MDS). ``repair_ratio_per_stage`` gives each stage its own ``r / k``:
unequal protection, the first picture survives what later stages do not.

Why zfec and not RaptorQ: the ``raptorq`` binding only builds codes with its default symbol
alignment (8 bytes), so its systematic symbols cannot be today's 343-byte packet payloads, and a
RaptorQ block of ``k`` symbols fails to decode from exactly ``k`` of them about 1% of the time
(RFC 6330); ``benchmarks/bench_fec.py`` measures both (docs/BENCHMARKS.md).

>>> import numpy as np
>>> from codec.code import ProgressiveCode
>>> from satlink.packets import FecConfig, packetize, reassemble
>>> code = ProgressiveCode(np.arange(5 * 8 * 8).reshape(5, 8, 8) % 1024, (128, 128), 10, 7)
>>> sources = packetize(code, 70, message_id=5)          # 42 indices a packet
>>> sent = protect(sources, FecConfig("reed-solomon", (1.0, 0.5, 0.5, 0.5, 0.5)))
>>> len(sources), len(sent.packets), sent.repair_count
(8, 14, 6)
>>> lost = {0, 1}                                        # both packets that start stage 1
>>> msg = reassemble([p for i, p in enumerate(sent.packets) if i not in lost])
>>> msg.complete_stages, bool((msg.indices == code.indices).all())
(5, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import zfec

from satlink.packets.blocks import (
    SHARES,
    block_bounds,
    block_of,
    block_source_seqs,
    message_stage_seqs,
    repair_count,
)
from satlink.packets.config import FecConfig
from satlink.packets.crc import crc16_function, seal
from satlink.packets.format import FRAGMENT_REPAIR_MARKER
from satlink.packets.packet import IndexPacket, Packet, RepairPacket
from satlink.packets.parse import parse_packet, parse_packets

__all__ = [
    "ProtectedPackets",
    "decode_block",
    "encode_block",
    "fragment_repairs",
    "protect",
    "repair_packets",
]


def encode_block(symbols: Sequence[bytes], shares: Sequence[int]) -> list[bytes]:
    """Repair symbols ``shares`` (each ``>= len(symbols)``) of one block of equal-size symbols.

    >>> encode_block([b"ab", b"cd"], [2, 3])[0] != b"ab"
    True
    """
    k = len(symbols)
    if not 1 <= k <= SHARES - 1 or any(not k <= s < SHARES for s in shares):
        raise ValueError(
            f"block of {k} sources with shares {list(shares)}: zfec allows k + r <= 256"
        )
    return list(zfec.Encoder(k, SHARES).encode(list(symbols), list(shares)))


def decode_block(k: int, symbols: Sequence[bytes], shares: Sequence[int]) -> list[bytes]:
    """The ``k`` source symbols of a block from any ``k`` distinct shares (sources are shares
    ``0 .. k-1``, repairs ``k ..``).

    >>> src = [b"ab", b"cd", b"ef"]
    >>> rep = encode_block(src, [3, 4])
    >>> decode_block(3, [src[1], rep[0], rep[1]], [1, 3, 4]) == src
    True
    """
    if len(symbols) < k or len(set(shares)) != len(shares):
        raise ValueError(f"need {k} distinct shares, got {sorted(shares)}")
    pairs = sorted(zip(shares, symbols, strict=True))[:k]
    return list(zfec.Decoder(k, SHARES).decode([s for _, s in pairs], [i for i, _ in pairs]))


@dataclass
class ProtectedPackets:
    """Sources and repairs in send order; ``is_repair[i]`` tells which is which."""

    packets: list[bytes]
    is_repair: list[bool]
    source_index: list[int]  # per packet: index into the source list, or -1 for a repair

    @property
    def repair_count(self) -> int:
        return sum(self.is_repair)


def _source_header_size(p: Packet) -> int:
    return 13 if isinstance(p, IndexPacket) else 10


def repair_packets(
    packets: Sequence[bytes | Packet], ratios: Sequence[float] | float
) -> list[tuple[int, int, bytes]]:
    """Repair packets of one whole message: ``(stage, block, packet bytes)`` per repair, block
    by block, share order. ``ratios`` is one ratio per stage (a file message: one number).

    >>> from satlink.packets import packetize_bytes, parse_packet
    >>> rep = repair_packets(packetize_bytes(bytes(1000), 360), 0.5)
    >>> [(s, b, parse_packet(p).share) for s, b, p in rep]
    [(0, 0, 3), (0, 0, 4)]
    """
    parsed = [p if isinstance(p, Packet) else None for p in packets]
    raw = [i for i, p in enumerate(parsed) if p is None]
    for i, p in zip(raw, parse_packets([packets[i] for i in raw]), strict=True):
        parsed[i] = p
    if not parsed:
        return []
    first = parsed[0]
    if isinstance(first, RepairPacket) or any(p.message_id != first.message_id for p in parsed):
        raise ValueError("repair_packets takes the source packets of one message")
    by_seq = {p.seq: p for p in parsed}
    if len(by_seq) != first.total:
        raise ValueError(f"repair_packets needs all {first.total} source packets of the message")
    stages = first.num_stages if isinstance(first, IndexPacket) else 1
    per_stage = list(ratios) if not isinstance(ratios, int | float) else [float(ratios)] * stages
    if len(per_stage) < stages:
        raise ValueError(
            f"repair_ratio_per_stage has {len(per_stage)} entries; the message has {stages} stages"
        )
    kind = first.kind
    hsize = _source_header_size(first)
    n = first.size_bytes
    out = []
    for stage, seqs_of_stage in enumerate(message_stage_seqs(first)):
        if not len(seqs_of_stage):
            continue  # a stage that starts no packet travels in its predecessor's
        for block in range(len(block_bounds(len(seqs_of_stage))) - 1):
            seqs = block_source_seqs(seqs_of_stage, block)
            k, r = len(seqs), repair_count(per_stage[stage], len(seqs))
            if r == 0:
                continue
            if k + r > SHARES - 1:
                raise ValueError(
                    f"stage {stage + 1}: {k} sources with ratio {per_stage[stage]} need {r} "
                    f"repairs; a block holds at most {SHARES - 1 - k} (8-bit share number)"
                )
            symbols = [by_seq[s].raw[hsize : n - 4] for s in seqs]
            template = bytearray(by_seq[seqs[0]].raw[:hsize])
            template[0] = (template[0] & 0xF3) | ((int(kind) + 2) << 2)
            shares = range(k, k + r)
            for share, sym in zip(shares, encode_block(symbols, shares), strict=True):
                template[3:5] = ((block << 8) | share).to_bytes(2, "big")
                out.append((stage, block, seal(bytes(template) + sym)))
    return out


def protect(
    packets: Sequence[bytes], config: FecConfig, *, file_ratio: float | None = None
) -> ProtectedPackets:
    """Add repair packets to one message's source packets (in send order) and place them as
    ``config.placement`` says. ``config`` is a :class:`~satlink.packets.FecConfig`; with scheme
    ``none`` the sources come back alone and unchanged.

    >>> from satlink.packets import FecConfig, packetize_bytes
    >>> out = protect(packetize_bytes(bytes(2000), 360), FecConfig("reed-solomon", (0.4,)))
    >>> out.is_repair
    [False, False, False, False, False, False, True, True, True]
    """
    sources = list(packets)
    plain = ProtectedPackets(sources, [False] * len(sources), list(range(len(sources))))
    if config.scheme == "none" or not sources:
        return plain
    first = parse_packet(sources[0])
    if isinstance(first, IndexPacket):
        ratios: Sequence[float] | float = config.repair_ratio_per_stage
    else:
        ratios = config.file_ratio() if file_ratio is None else file_ratio
    repairs = repair_packets(sources, ratios)
    if not repairs:
        return plain
    where: dict[tuple[int, int], int] = {}  # block -> send position of its last source
    for i, raw in enumerate(sources):
        key = block_of(parse_packet(raw))
        where[key] = max(where.get(key, -1), i)
    n = len(sources)
    keyed: list[tuple[float, int, bytes, int]] = [
        (float(i), 0, p, i) for i, p in enumerate(sources)
    ]
    per_block: dict[tuple[int, int], list[bytes]] = {}
    for stage, block, raw in repairs:
        per_block.setdefault((stage, block), []).append(raw)
    for key, items in per_block.items():
        last = where[key]
        for j, raw in enumerate(items):
            if config.placement == "end":
                pos = n + 0.0
            elif config.placement == "spread":
                pos = last + 0.5 + (n - 1 - last) * (j + 1) / (len(items) + 1)
            else:  # after-block
                pos = last + 0.5
            keyed.append((pos, 1, raw, -1))
    keyed.sort(key=lambda t: (t[0], t[1]))  # stable: repairs keep block and share order
    return ProtectedPackets(
        [t[2] for t in keyed], [t[1] == 1 for t in keyed], [t[3] for t in keyed]
    )


def fragment_repairs(per_fragment: Sequence[bytes], header: bytes, count: int) -> list[bytes]:
    """Repair fragments (marker 0xF2) over a packet's fragment payloads (zero-padded to the
    longest); ``header`` is the 7-byte fragment header of the first fragment. Internal to
    :func:`satlink.packets.fragment`."""
    size = max(len(p) for p in per_fragment)
    padded = [p + bytes(size - len(p)) for p in per_fragment]
    k = len(padded)
    out = []
    for share, sym in zip(
        range(k, k + count), encode_block(padded, range(k, k + count)), strict=True
    ):
        body = bytes([FRAGMENT_REPAIR_MARKER | (header[0] & 4)]) + header[1:5]
        body += bytes([share, k]) + sym
        out.append(body + crc16_function(body).to_bytes(2, "big"))
    return out
