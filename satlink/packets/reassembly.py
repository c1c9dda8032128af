"""Receiving side, second step: collect the packets of a message, in any order, with duplicates
and gaps, into an index array with a ``received`` mask (or, once complete, a file).

:class:`Reassembler` keeps per-message arrays filled as packets arrive, so that a preview after
every packet costs a copy, not a rebuild; a packet that disagrees with the message's earlier
packets is rejected with :class:`PacketConsistencyError`. :func:`reassemble` and
:func:`reassemble_bytes` are the one-shot forms.

>>> import numpy as np
>>> from codec.code import ProgressiveCode
>>> from satlink.packets import packetize
>>> code = ProgressiveCode(np.ones((2, 4, 4), np.uint16), (64, 64), 10, 1)
>>> msg = reassemble(packetize(code, 30)[:2])         # stage 1 arrived, stage 2 did not
>>> msg.complete_stages, msg.missing_seqs
(1, [2, 3])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from satlink.packets.blocks import block_of
from satlink.packets.errors import (
    PacketConsistencyError,
    PacketError,
    PacketLengthError,
    PacketTruncatedError,
)
from satlink.packets.fec import decode_block
from satlink.packets.format import PayloadKind, check_packet_size
from satlink.packets.packet import BytesPacket, IndexPacket, Packet, RepairPacket
from satlink.packets.parse import parse_packet, parse_packets

if TYPE_CHECKING:
    # Only the type: importing codec at run time pulls in torch (seconds), which transport-only
    # users (channel simulation, decoding file messages) do not need. IndexMessage.code imports
    # it lazily.
    from codec.code import ProgressiveCode

__all__ = ["BytesMessage", "IndexMessage", "Reassembler", "reassemble", "reassemble_bytes"]


class MissingSeqs:
    """What index and file messages share: which of their packets have not arrived."""

    total_packets: int
    received_seqs: tuple[int, ...]

    @property
    def missing_seqs(self) -> list[int]:
        """Sequence numbers of the packets that have not arrived."""
        have = set(self.received_seqs)
        return [s for s in range(self.total_packets) if s not in have]


@dataclass(frozen=True, eq=False)
class IndexMessage(MissingSeqs):
    """What arrived of one indices message: ``indices`` (zeros where missing) and ``received``."""

    message_id: int
    indices: np.ndarray  # uint16 [stages, h, w]
    received: np.ndarray  # bool [stages, h, w]
    image_size: tuple[int, int]
    bits_per_index: int
    model_id: int
    packet_size_bytes: int
    total_packets: int
    received_seqs: tuple[int, ...]

    @property
    def complete(self) -> bool:
        return len(self.received_seqs) == self.total_packets

    @property
    def complete_stages(self) -> int:
        """How many leading stages arrived in full."""
        full = self.received.reshape(self.received.shape[0], -1).all(axis=1)
        return int(np.argmin(full)) if not full.all() else int(full.size)

    @property
    def code(self) -> ProgressiveCode:
        """The indices as a :class:`codec.code.ProgressiveCode` (decode with ``received``)."""
        from codec.code import ProgressiveCode  # lazy: see the TYPE_CHECKING import above

        return ProgressiveCode(self.indices, self.image_size, self.bits_per_index, self.model_id)


@dataclass(frozen=True, eq=False)
class BytesMessage(MissingSeqs):
    """What arrived of one file message; ``data`` is ``None`` until every packet is in."""

    message_id: int
    data: bytes | None
    file_size_bytes: int
    content_type: str
    packet_size_bytes: int
    total_packets: int
    received_seqs: tuple[int, ...]

    @property
    def complete(self) -> bool:
        return self.data is not None


def _descriptor(p: Packet) -> tuple[tuple[str, object], ...]:
    # The fields every packet of one message must share.
    if isinstance(p, IndexPacket):
        return (
            ("payload_kind", p.kind.name),
            ("order", p.order),
            ("interleave", p.interleave),
            ("model_id", p.model_id),
            ("num_stages", p.num_stages),
            ("bits_per_index", p.bits_per_index),
            ("image_size", p.image_size),
            ("downsample_log2", p.downsample_log2),
        )
    assert isinstance(p, BytesPacket)
    return (
        ("payload_kind", p.kind.name),
        ("file_size_bytes", p.file_size_bytes),
        ("content_type", p.content_type),
    )


class Reassembler:
    """Collects packets of one or more messages, in any order, with duplicates and gaps.

    The first packet accepted fixes the packet size (unless given) and, per message id, the
    message's geometry; a later packet that disagrees raises :class:`PacketConsistencyError`
    and is not kept. Exact duplicates are ignored.

    >>> import numpy as np
    >>> from codec.code import ProgressiveCode
    >>> from satlink.packets import packetize
    >>> code = ProgressiveCode(np.ones((2, 4, 4), np.uint16), (64, 64), 10, 1)
    >>> packets = packetize(code, 30, message_id=9)   # 10 indices per packet, 2 per stage
    >>> r = Reassembler()
    >>> [r.add(p) for p in (packets[2], packets[0], packets[2])]
    [True, True, False]
    >>> msg = r.index_message()
    >>> msg.missing_seqs, int(msg.received.sum())
    ([1, 3], 20)
    """

    def __init__(self, packet_size_bytes: int | None = None) -> None:
        if packet_size_bytes is not None:
            check_packet_size(packet_size_bytes)
        self.packet_size_bytes = packet_size_bytes
        self._first: dict[int, Packet] = {}
        self._packets: dict[int, dict[int, Packet]] = {}
        # Per indices message: [stages, h*w] indices and received mask, filled as packets
        # arrive, so that a preview after every packet costs a copy, not a rebuild.
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # Repair packets per message and block: {message_id: {(stage, block): {share: p}}}.
        self._repairs: dict[int, dict[tuple[int, int], dict[int, RepairPacket]]] = {}
        self.duplicates = 0
        self.recovered: list[tuple[int, int]] = []  # (message_id, seq) rebuilt from repairs
        self.last_recovered: list[IndexPacket | BytesPacket] = []  # by the latest add()
        self.recovery_errors: list[str] = []  # a rebuilt packet the checks refused (never kept)

    def add(self, packet: bytes | bytearray | memoryview | Packet) -> bool:
        """Accept one packet; ``True`` if new, ``False`` for an exact duplicate.

        Raises :class:`PacketError` subclasses for malformed or inconsistent packets. A repair
        packet is kept with its block; whenever a block holds as many packets (sources and
        repairs) as it has sources, its missing sources are rebuilt, checked like any packet and
        placed: they are in :attr:`last_recovered` after this call.
        """
        p = packet if isinstance(packet, Packet) else parse_packet(packet, self.packet_size_bytes)
        if self.packet_size_bytes is None:
            self.packet_size_bytes = p.size_bytes
        elif p.size_bytes != self.packet_size_bytes:
            cls = (
                PacketTruncatedError if p.size_bytes < self.packet_size_bytes else PacketLengthError
            )
            raise cls(f"packet is {p.size_bytes} bytes, expected {self.packet_size_bytes}")
        self.last_recovered = []
        if isinstance(p, RepairPacket):
            return self._add_repair(p)
        new = self._accept(p)
        if new and p.message_id in self._repairs:
            self._recover(p.message_id, block_of(p))
        return new

    def _add_repair(self, p: RepairPacket) -> bool:
        blocks = self._repairs.setdefault(p.message_id, {})
        ref: Packet | None = self._first.get(p.message_id)
        if ref is None:
            ref = next((r for b in blocks.values() for r in b.values()), None)
        if ref is not None:
            kind = ref.protects if isinstance(ref, RepairPacket) else ref.kind
            a, e = p.raw, ref.raw
            end = p.header_size_bytes - (1 if p.protects == PayloadKind.INDICES else 0)
            same = kind == p.protects and (a[0] ^ e[0]) & 3 == 0 and a[5:end] == e[5:end]
            if same and p.protects == PayloadKind.INDICES:
                same = not (a[12] ^ e[12]) & 15
            if not same:
                raise PacketConsistencyError(
                    p.message_id,
                    p.seq,
                    "repair header (kind, order, geometry or file)",
                    f"bytes {a[: p.header_size_bytes].hex()}",
                    f"bytes {e[: p.header_size_bytes].hex()}",
                )
        shares = blocks.setdefault((p.stage, p.block), {})
        old = shares.get(p.share)
        if old is not None:
            if old.raw != p.raw:
                raise PacketConsistencyError(
                    p.message_id, p.seq, "repair payload", "different bytes", "an earlier copy"
                )
            self.duplicates += 1
            return False
        shares[p.share] = p
        self._recover(p.message_id, (p.stage, p.block))
        return True

    def _recover(self, message_id: int, key: tuple[int, int]) -> None:
        """Rebuild a block's missing sources once it holds enough packets."""
        shares = self._repairs.get(message_id, {}).get(key)
        if not shares:
            return
        rp = next(iter(shares.values()))
        have = self._packets.get(message_id, {})
        seqs = rp.source_seqs
        missing = [i for i, s in enumerate(seqs) if s not in have]
        if not missing or len(seqs) - len(missing) + len(shares) < rp.block_sources:
            return
        h, n = rp.header_size_bytes, rp.size_bytes
        ids = [i for i, s in enumerate(seqs) if s in have]
        symbols = [have[seqs[i]].raw[h : n - 4] for i in ids]
        ids += list(shares)
        symbols += [r.symbol for r in shares.values()]
        source = decode_block(rp.block_sources, symbols, ids)
        for i in missing:
            raw = rp.source_packet(seqs[i], source[i])
            try:
                pkt = parse_packet(raw, n)
                if self._accept(pkt):
                    self.recovered.append((message_id, seqs[i]))
                    self.last_recovered.append(pkt)
            except PacketError as exc:  # a repair that passed its CRC but rebuilds nonsense
                self.recovery_errors.append(f"message {message_id} seq {seqs[i]}: {exc}")

    def _accept(self, p: IndexPacket | BytesPacket) -> bool:
        """Keep one source packet (no recovery): the checks of :meth:`add`."""
        first = self._first.get(p.message_id)
        if first is None:
            self._first[p.message_id] = p
            self._packets[p.message_id] = {p.seq: p}
            if isinstance(p, IndexPacket):
                shape = (p.num_stages, p.latent_shape[0] * p.latent_shape[1])
                self._arrays[p.message_id] = (np.zeros(shape, np.uint16), np.zeros(shape, bool))
                self._place(p)
            return True
        # Fast check on the raw header bytes all packets of a message share (byte 0 and, for
        # indices, bytes 5-11 and the low nibble of byte 12; for file bytes, bytes 5-9); only
        # on a mismatch find and name the field that differs.
        a, e = p.raw, first.raw
        if isinstance(p, IndexPacket):
            same = a[0] == e[0] and a[5:12] == e[5:12] and not (a[12] ^ e[12]) & 15
        else:
            same = a[0] == e[0] and a[5:10] == e[5:10]
        if not same:
            # Descriptors of different kinds differ in their first entry: zip stops in time.
            pairs = zip(_descriptor(p), _descriptor(first), strict=False)
            for (name, value), (_, earlier) in pairs:
                if value != earlier:
                    raise PacketConsistencyError(p.message_id, p.seq, name, value, earlier)
        have = self._packets[p.message_id]
        old = have.get(p.seq)
        if old is not None:
            if old.raw != p.raw:
                raise PacketConsistencyError(
                    p.message_id,
                    p.seq,
                    "payload",
                    "different bytes",
                    "the bytes of an earlier copy of this seq",
                )
            self.duplicates += 1
            return False
        have[p.seq] = p
        if isinstance(p, IndexPacket):
            self._place(p)
        return True

    def add_many(
        self, packets: Iterable[bytes | bytearray | memoryview | Packet]
    ) -> list[bool | PacketError]:
        """Accept many packets (parsed in one batch); per packet ``True`` (new), ``False``
        (exact duplicate) or the :class:`PacketError` that rejected it. Never raises for a
        bad packet, so one corrupted packet does not stop the rest.

        >>> import numpy as np
        >>> from codec.code import ProgressiveCode
        >>> from satlink.packets import packetize
        >>> packets = packetize(ProgressiveCode(np.ones((2, 4, 4), np.uint16), (64, 64), 10, 1), 30)
        >>> Reassembler().add_many([packets[0], packets[0], packets[1][:-1]])
        [True, False, PacketTruncatedError('packet is 29 bytes, expected 30 (1 bytes missing)')]
        """
        items = list(packets)
        results: list[bool | PacketError] = []
        # Until a packet fixes the packet size, go one by one, as add() would.
        while self.packet_size_bytes is None and len(results) < len(items):
            results.append(self._try_add(items[len(results)]))
        rest = items[len(results) :]
        raw = [i for i, p in enumerate(rest) if not isinstance(p, Packet)]
        parsed = parse_packets([rest[i] for i in raw], self.packet_size_bytes, errors="return")
        for i, p in zip(raw, parsed, strict=True):
            rest[i] = p
        for p in rest:
            results.append(p if isinstance(p, PacketError) else self._try_add(p))
        return results

    def _try_add(self, packet: bytes | bytearray | memoryview | Packet) -> bool | PacketError:
        try:
            return self.add(packet)
        except PacketError as exc:
            return exc

    def _place(self, p: IndexPacket) -> None:
        indices, received = self._arrays[p.message_id]
        offsets = p.offsets  # one 1-D scatter: faster than a (stage, position) pair
        indices.reshape(-1)[offsets] = p.indices
        received.reshape(-1)[offsets] = True

    @property
    def message_ids(self) -> list[int]:
        """Ids of the messages seen so far, in arrival order."""
        return list(self._first)

    def _message(self, message_id: int | None, kind: PayloadKind) -> tuple[Packet, dict]:
        if message_id is None:
            if not self._first:
                raise ValueError("no packet has arrived yet")
            if len(self._first) != 1:
                raise ValueError(
                    f"pass message_id: {len(self._first)} messages seen ({self.message_ids})"
                )
            message_id = next(iter(self._first))
        if message_id not in self._first:
            raise KeyError(f"no packet of message {message_id} has arrived")
        first = self._first[message_id]
        if first.kind != kind:
            raise ValueError(f"message {message_id} carries {first.kind.name}, not {kind.name}")
        return first, self._packets[message_id]

    def index_message(self, message_id: int | None = None) -> IndexMessage:
        """Index array and ``received`` mask of a message (the only one if not given)."""
        first, have = self._message(message_id, PayloadKind.INDICES)
        assert isinstance(first, IndexPacket)
        h, w = first.latent_shape
        indices, received = self._arrays[first.message_id]
        return IndexMessage(
            first.message_id,
            indices.reshape(-1, h, w).copy(),  # copies: later packets must not change them
            received.reshape(-1, h, w).copy(),
            first.image_size,
            first.bits_per_index,
            first.model_id,
            first.size_bytes,
            first.total,
            tuple(sorted(have)),
        )

    def bytes_message(self, message_id: int | None = None) -> BytesMessage:
        """The file of a bytes message once complete (else ``data`` is ``None``)."""
        first, have = self._message(message_id, PayloadKind.BYTES)
        assert isinstance(first, BytesPacket)
        complete = len(have) == first.total
        data = b"".join(have[s].data for s in range(first.total)) if complete else None
        return BytesMessage(
            first.message_id,
            data,
            first.file_size_bytes,
            first.content_type,
            first.size_bytes,
            first.total,
            tuple(sorted(have)),
        )


def reassemble(
    packets: Iterable[bytes | Packet], *, packet_size_bytes: int | None = None
) -> IndexMessage:
    """Reassemble one indices message from any subset of its packets (any order, duplicates).

    Raises on the first malformed packet, else on the first inconsistent one; use
    :class:`Reassembler` (``add``, ``add_many``) to skip bad packets and keep going.

    >>> import numpy as np
    >>> from codec.code import ProgressiveCode
    >>> from satlink.packets import packetize
    >>> code = ProgressiveCode(np.full((3, 8, 8), 5, np.uint16), (128, 128), 10, 1)
    >>> msg = reassemble(packetize(code, 70)[::-1])
    >>> msg.complete, bool((msg.code.indices == code.indices).all())
    (True, True)
    """
    r = Reassembler(packet_size_bytes)
    for p in parse_packets(packets, packet_size_bytes):
        r.add(p)
    return r.index_message()


def reassemble_bytes(
    packets: Iterable[bytes | Packet], *, packet_size_bytes: int | None = None
) -> BytesMessage:
    """Reassemble one file message; ``data`` is ``None`` and ``missing_seqs`` lists the gaps
    until every packet has arrived.

    >>> from satlink.packets import packetize_bytes
    >>> packets = packetize_bytes(bytes(1000), 360)
    >>> reassemble_bytes(packets[:2]).missing_seqs
    [2]
    """
    r = Reassembler(packet_size_bytes)
    for p in parse_packets(packets, packet_size_bytes):
        r.add(p)
    return r.bytes_message()
