"""Fragmentation, for services whose message cap is smaller than a packet (BeiDou-3's global
short message carries 70 bytes): a packet is split into numbered fragments, each with its own
7-byte header and CRC-16, and a :class:`Defragmenter` rejoins them. A packet with a fragment
missing never comes out; the packet's own CRC-32C checks the rejoined bytes end to end.

>>> from satlink.packets import packetize_bytes
>>> packet = packetize_bytes(b"hello", 60)[0]
>>> d = Defragmenter()
>>> [d.add(f) for f in fragment(packet, 30)][-1] == packet
True
"""

from __future__ import annotations

from dataclasses import dataclass

from satlink.packets import crc
from satlink.packets.blocks import repair_count
from satlink.packets.errors import (
    PacketConsistencyError,
    PacketCRCError,
    PacketFieldError,
    PacketTruncatedError,
    PacketVersionError,
)
from satlink.packets.fec import decode_block, fragment_repairs
from satlink.packets.format import (
    FRAGMENT_CRC_SIZE_BYTES,
    FRAGMENT_HEADER,
    FRAGMENT_HEADER_SIZE_BYTES,
    FRAGMENT_MARKER,
    FRAGMENT_REPAIR_MARKER,
    MAX_FRAGMENTS,
    MIN_MTU_BYTES,
)
from satlink.packets.packet import RepairPacket
from satlink.packets.parse import parse_packet
from satlink.packets.sizing import fragment_count

__all__ = ["Defragmenter", "Fragment", "fragment", "fragment_count", "parse_fragment"]


@dataclass(eq=False, slots=True)
class Fragment:
    """One piece of a logical packet, keyed by the packet's ``(message_id, seq)``."""

    message_id: int
    seq: int
    index: int  # 0 .. count-1 for a slice of the packet; count .. 255 for a repair fragment
    count: int  # slices of the packet (k)
    payload: bytes
    repair_packet: bool = False  # the packet is an erasure-code repair packet (marker bit 2)

    @property
    def is_repair(self) -> bool:
        """A repair fragment (marker 0xF2 / 0xF6): a Reed-Solomon share over the slices."""
        return self.index >= self.count


def fragment(packet: bytes, mtu_bytes: int, *, repair_ratio: float = 0.0) -> list[bytes]:
    """Split a packet into fragments of at most ``mtu_bytes`` (all full but the last).

    Each fragment: 7-byte header (marker, message id, seq, index, count), a slice of the
    packet, CRC-16/CCITT-FALSE. Rejoin with :class:`Defragmenter`. With ``repair_ratio > 0``,
    ``ceil(ratio * count)`` repair fragments (marker 0xF2, a full ``mtu_bytes`` each) follow:
    any ``count`` of the fragments then rejoin the packet.

    >>> from satlink.packets import packetize_bytes
    >>> packet = packetize_bytes(bytes(500), 360)[0]
    >>> [len(f) for f in fragment(packet, 70)]
    [70, 70, 70, 70, 70, 64]
    """
    p = parse_packet(packet)  # only valid packets are split: the key comes from their header
    count = fragment_count(p.size_bytes, mtu_bytes)
    crc16 = crc.crc16_function
    per = mtu_bytes - FRAGMENT_HEADER_SIZE_BYTES - FRAGMENT_CRC_SIZE_BYTES
    # Fragments of a repair packet set marker bit 2: their (message_id, seq) key is the repair
    # packet's block/share field and must not meet a source packet's seq in a Defragmenter.
    marker = FRAGMENT_MARKER | (4 if isinstance(p, RepairPacket) else 0)
    out = []
    for i in range(count):
        body = FRAGMENT_HEADER.pack(marker, p.message_id, p.seq, i, count)
        body += p.raw[i * per : (i + 1) * per]
        out.append(body + crc16(body).to_bytes(FRAGMENT_CRC_SIZE_BYTES, "big"))
    extra = repair_count(repair_ratio, count)
    if extra:
        if count + extra > MAX_FRAGMENTS:
            raise ValueError(f"{count} fragments + {extra} repair fragments exceed {MAX_FRAGMENTS}")
        slices = [p.raw[i * per : (i + 1) * per] for i in range(count)]
        out += fragment_repairs(slices, out[0][:FRAGMENT_HEADER_SIZE_BYTES], extra)
    return out


def parse_fragment(data: bytes | bytearray | memoryview) -> Fragment:
    """Check and decode one fragment; raise a :class:`PacketError` subclass naming the fault.

    >>> from satlink.packets import packetize_bytes
    >>> f = parse_fragment(fragment(packetize_bytes(b"hi", 40)[0], 20)[1])
    >>> f.index, f.count, len(f.payload)
    (1, 4, 11)
    """
    data = bytes(data)
    n = len(data)
    if n < MIN_MTU_BYTES:
        raise PacketTruncatedError(
            f"fragment is {n} bytes, shorter than any valid fragment ({MIN_MTU_BYTES} bytes)"
        )
    stored = int.from_bytes(data[-FRAGMENT_CRC_SIZE_BYTES:], "big")
    computed = crc.crc16_function(data[:-FRAGMENT_CRC_SIZE_BYTES])
    if stored != computed:
        raise PacketCRCError(
            f"fragment CRC-16 mismatch: trailer at byte offset {n - FRAGMENT_CRC_SIZE_BYTES} "
            f"holds 0x{stored:04x}, bytes 0..{n - 3} give 0x{computed:04x}"
        )
    marker, message_id, seq, index, count = FRAGMENT_HEADER.unpack_from(data)
    if marker & ~4 not in (FRAGMENT_MARKER, FRAGMENT_REPAIR_MARKER):
        raise PacketVersionError(
            f"byte 0 is 0x{marker:02x}; fragments start with 0x{FRAGMENT_MARKER:02x} "
            f"(0x{FRAGMENT_REPAIR_MARKER:02x} repair; +4 for a repair packet's) "
            "(is this an unfragmented packet?)"
        )
    if count == 0:
        raise PacketFieldError("fragment_count", 0, f"1..{MAX_FRAGMENTS}", 6)
    if marker & 3 == 1 and index >= count:
        raise PacketFieldError("fragment_index", index, f"0..{count - 1}", 5)
    if marker & 3 == 2 and index < count:
        raise PacketFieldError("fragment_index", index, f"{count}..255 (a repair fragment)", 5)
    return Fragment(
        message_id, seq, index, count, data[FRAGMENT_HEADER_SIZE_BYTES:-2], bool(marker & 4)
    )


class Defragmenter:
    """Rejoins fragments into logical packets; a packet with a fragment missing never comes out.

    ``add`` returns the rejoined packet bytes when its last fragment arrives (check them with
    :func:`parse_packet`, whose CRC-32C covers the whole packet), else ``None``. At most
    ``max_pending`` incomplete packets are kept; beyond that the oldest is dropped.

    >>> from satlink.packets import packetize_bytes
    >>> frags = fragment(packetize_bytes(bytes(100), 60)[0], 20)
    >>> d = Defragmenter()
    >>> [d.add(f) is not None for f in frags[::-1]]
    [False, False, False, False, False, True]
    """

    def __init__(self, max_pending: int = 4096, packet_size_bytes: int | None = None) -> None:
        self.max_pending = max_pending
        self.packet_size_bytes = packet_size_bytes  # known: a rebuilt last slice is cut to it
        self._pending: dict[tuple, dict[int, Fragment]] = {}
        self._done: set[tuple] = set()
        self.duplicates = 0
        self.evicted = 0
        self.recovered = 0  # packets rejoined with the help of repair fragments

    def add(self, data: bytes | bytearray | memoryview) -> bytes | None:
        """Accept one fragment; return the whole packet once all its fragments are in."""
        f = parse_fragment(data)
        key = (f.message_id, f.seq, "repair") if f.repair_packet else (f.message_id, f.seq)
        if key in self._done:  # a late copy of a fragment of a packet already rejoined
            self.duplicates += 1
            return None
        parts = self._pending.get(key)
        if parts is None:
            if len(self._pending) >= self.max_pending:
                del self._pending[next(iter(self._pending))]  # oldest first (insertion order)
                self.evicted += 1
            parts = self._pending[key] = {}
        elif (count := next(iter(parts.values())).count) != f.count:
            raise PacketConsistencyError(f.message_id, f.seq, "fragment_count", f.count, count)
        old = parts.get(f.index)
        if old is not None:
            if old.payload != f.payload:
                raise PacketConsistencyError(
                    f.message_id,
                    f.seq,
                    f"fragment {f.index} payload",
                    "different bytes",
                    "an earlier copy",
                )
            self.duplicates += 1
            return None
        parts[f.index] = f
        if len(parts) < f.count:
            return None
        del self._pending[key]
        self._done.add(key)
        if all(i in parts for i in range(f.count)):
            return b"".join(parts[i].payload for i in range(f.count))
        return self._rebuild(parts, f.count)

    def _rebuild(self, parts: dict[int, Fragment], k: int) -> bytes:
        """Join a packet from any ``k`` fragments, repairs included (Reed-Solomon)."""
        per = max(len(p.payload) for p in parts.values())
        shares = sorted(parts)[:k]
        symbols = [parts[i].payload + bytes(per - len(parts[i].payload)) for i in shares]
        joined = b"".join(decode_block(k, symbols, shares))
        self.recovered += 1
        if k - 1 in parts:  # the last slice arrived: its length is known
            return joined[: (k - 1) * per + len(parts[k - 1].payload)]
        if self.packet_size_bytes is not None:
            return joined[: self.packet_size_bytes]
        # Unknown packet size: the one length whose CRC-32C trailer matches (zero padding).
        for n in range(len(joined), (k - 1) * per, -1):
            if crc.crc32c_function(joined[: n - 4]) == int.from_bytes(joined[n - 4 : n], "big"):
                return joined[:n]
        return joined  # no length fits: parse_packet will reject it by its CRC

    def missing(self) -> dict[tuple[int, int], list[int]]:
        """``{(message_id, seq): [missing fragment indices]}`` of packets still incomplete (a
        repair packet's key is ``(message_id, seq, "repair")``)."""
        out = {}
        for key, parts in self._pending.items():
            count = next(iter(parts.values())).count
            out[key] = [i for i in range(count) if i not in parts]
        return out
