"""Receiving side, first step: check one packet (or many at once) and decode its fields.

No field is read before the CRC has passed, and every check names its fault: length
(:class:`PacketTruncatedError`, :class:`PacketLengthError`), CRC (:class:`PacketCRCError`),
version (:class:`PacketVersionError`), then fields and zero padding (:class:`PacketFieldError`).
:func:`parse_packets` gives the same results as :func:`parse_packet` on each packet, with the
unpacking of indices batched per packet size and bits per index.

>>> from satlink.packets import packetize_bytes
>>> from satlink.packets.parse import parse_packets
>>> good = packetize_bytes(b"hello", 20)[0]
>>> [type(p).__name__ for p in parse_packets([good, good[:-1] + b"?"], errors="return")]
['BytesPacket', 'PacketCRCError']
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from functools import lru_cache
from typing import Literal

import numpy as np

from satlink.packets import crc
from satlink.packets.bitpack import unpack_at, unpack_plan
from satlink.packets.blocks import block_bounds, block_source_seqs
from satlink.packets.errors import (
    PacketCRCError,
    PacketError,
    PacketFieldError,
    PacketLengthError,
    PacketTruncatedError,
    PacketVersionError,
)
from satlink.packets.format import (
    BYTES_HEADER,
    BYTES_HEADER_SIZE_BYTES,
    CONTENT_TYPES,
    CRC_SIZE_BYTES,
    FORMAT_VERSION,
    INDEX_HEADER_SIZE_BYTES,
    MAX_PACKET_SIZE_BYTES,
    MAX_PACKETS_PER_MESSAGE,
    MAX_POSITIONS_PER_STAGE,
    MESSAGE_SEQ,
    MIN_PACKET_SIZE_BYTES,
    ORDERS,
    PayloadKind,
)
from satlink.packets.packet import BytesPacket, IndexPacket, Packet, RepairPacket
from satlink.packets.stream import packet_count, slot_stages_ranks, stage_seqs

__all__ = ["parse_packet", "parse_packets"]

_KIND_INDICES, _KIND_BYTES = PayloadKind.INDICES, PayloadKind.BYTES  # plain lookups when parsing
_REPAIR_KINDS = (PayloadKind.REPAIR_INDICES, PayloadKind.REPAIR_BYTES)


def _check_zero_padding(data: bytes, start: int, end: int, used_bits: int) -> None:
    # Padding must be zero: a sender bug (or a forged header) then cannot hide data there,
    # and the encoding stays canonical (one set of fields, one byte string).
    partial = used_bits & 7
    if partial and data[start - 1] & ((1 << (8 - partial)) - 1):
        raise PacketFieldError(
            "padding", f"0x{data[start - 1]:02x}", "unused low bits zero", start - 1
        )
    tail = data[start:end]
    rest = tail.lstrip(b"\x00")
    if rest:
        at = start + len(tail) - len(rest)
        raise PacketFieldError("padding", f"0x{data[at]:02x}", "0x00", at)


_F_RAW, _F_BITS, _F_COUNT = 6, 11, 17  # positions in the tuple _index_fields returns


@lru_cache(maxsize=1024)
def _index_geometry(n: int, byte0: int, descriptor: bytes, k: int) -> tuple:
    """Checks and derived values that depend only on what all packets of a message share
    (cached: a message's packets repeat them). ``descriptor`` is header bytes 5-11."""
    model_id, sb, height, width = struct.unpack(">HBHH", descriptor)
    num_stages, b = (sb >> 4) + 1, (sb & 15) + 1
    if height == 0:
        raise PacketFieldError("image_height_px", 0, "1..65535", 8)
    if width == 0:
        raise PacketFieldError("image_width_px", 0, "1..65535", 10)
    h, w = -(-height >> k), -(-width >> k)
    positions = h * w
    if positions > MAX_POSITIONS_PER_STAGE:
        raise PacketFieldError(
            "downsample_log2",
            k,
            f"values giving at most {MAX_POSITIONS_PER_STAGE} latent positions",
            12,
            f"image {height}x{width} px gives a {h}x{w} latent",
        )
    cap = (n - INDEX_HEADER_SIZE_BYTES - CRC_SIZE_BYTES) * 8 // b
    total = packet_count(num_stages, positions, cap)
    if total > MAX_PACKETS_PER_MESSAGE:
        raise PacketFieldError(
            "image_height_px",
            height,
            f"sizes needing at most {MAX_PACKETS_PER_MESSAGE} packets",
            8,
            f"{num_stages} stages of a {h}x{w} latent need {total} packets of {n} bytes",
        )
    order, interleave = ORDERS[(byte0 >> 1) & 1], bool(byte0 & 1)
    return (order, interleave, model_id, num_stages, b, (height, width), (h, w), positions, cap,
            total)  # fmt: skip


def _index_fields(data: bytes, n: int) -> tuple:
    """Check an index packet's header and padding (CRC already checked); return the
    :class:`IndexPacket` arguments up to, not including, ``indices``."""
    sk = data[12]
    k = sk & 15
    order, interleave, model_id, num_stages, b, image_size, latent, positions, cap, total = (
        _index_geometry(n, data[0], data[5:12], k)
    )
    message_id, seq = MESSAGE_SEQ.unpack_from(data, 1)
    if seq >= total:
        raise PacketFieldError(
            "seq", seq, f"0..{total - 1}", 3, f"the message has {total} packets of {n} bytes"
        )
    first = seq * cap
    if order == "stage-major":  # the common case, without the array round trip
        stage = first // positions
    else:
        stage = int(slot_stages_ranks(order, num_stages, positions, cap, first)[0])
    if sk >> 4 != stage:
        raise PacketFieldError(
            "stage", sk >> 4, str(stage), 12, f"seq {seq} starts in stage {stage}"
        )
    count = min(cap, num_stages * positions - first)
    used_bits = count * b
    start = INDEX_HEADER_SIZE_BYTES + ((used_bits + 7) >> 3)
    end = n - CRC_SIZE_BYTES
    # Cheap test first (two C calls); the helper then finds and names the offending byte.
    if data.count(0, start, end) != end - start or (
        used_bits & 7 and data[start - 1] & (0xFF >> (used_bits & 7))
    ):
        _check_zero_padding(data, start, end, used_bits)
    return (
        n, FORMAT_VERSION, _KIND_INDICES, message_id, seq, total, data, order, interleave,
        model_id, num_stages, b, image_size, k, latent, stage, first, count,
    )  # fmt: skip


def _parse_bytes(data: bytes, n: int) -> BytesPacket:
    byte0, message_id, seq, file_size, ctype = BYTES_HEADER.unpack_from(data)
    if byte0 & 3:
        raise PacketFieldError("reserved", byte0 & 3, "0 for the bytes kind", 0, "byte 0 bits 1-0")
    if ctype not in CONTENT_TYPES:
        raise PacketFieldError("content_type", ctype, f"0..{len(CONTENT_TYPES) - 1}", 9)
    cap = n - BYTES_HEADER_SIZE_BYTES - CRC_SIZE_BYTES
    total = max(1, -(-file_size // cap))
    if total > MAX_PACKETS_PER_MESSAGE:
        raise PacketFieldError(
            "file_size_bytes",
            file_size,
            f"0..{MAX_PACKETS_PER_MESSAGE * cap} for {n}-byte packets",
            5,
        )
    if seq >= total:
        raise PacketFieldError(
            "seq",
            seq,
            f"0..{total - 1}",
            3,
            f"a {file_size}-byte file takes {total} packets of {n} bytes",
        )
    offset = seq * cap
    length = min(cap, file_size - offset)
    end = BYTES_HEADER_SIZE_BYTES + length
    _check_zero_padding(data, end, n - CRC_SIZE_BYTES, 0)
    return BytesPacket(
        n,
        FORMAT_VERSION,
        _KIND_BYTES,
        message_id,
        seq,
        total,
        data,
        file_size,
        CONTENT_TYPES[ctype],
        offset,
        data[BYTES_HEADER_SIZE_BYTES:end],
    )


def _parse_repair(data: bytes, n: int, kind: int) -> RepairPacket:
    """A repair packet (kind 2: over indices packets, 3: over file packets): the header after
    ``seq`` is the protected message's, ``seq`` is ``block << 8 | share``."""
    message_id, rid = MESSAGE_SEQ.unpack_from(data, 1)
    block, share = rid >> 8, rid & 0xFF
    if kind == PayloadKind.REPAIR_INDICES:
        sk = data[12]
        geometry = _index_geometry(n, data[0], data[5:12], sk & 15)
        order, num_stages, positions = geometry[0], geometry[3], geometry[7]
        cap, total = geometry[8], geometry[9]
        stage = sk >> 4
        if stage >= num_stages:
            raise PacketFieldError("stage", stage, f"0..{num_stages - 1}", 12)
        seqs_of_stage = stage_seqs(order, num_stages, positions, cap)[stage]
        if not len(seqs_of_stage):
            raise PacketFieldError(
                "stage", stage, "a stage that starts a packet", 12, "no packet starts in it"
            )
        protects, header = PayloadKind.INDICES, INDEX_HEADER_SIZE_BYTES
    else:
        if data[0] & 3:
            raise PacketFieldError("reserved", data[0] & 3, "0 for kind 3", 0, "byte 0 bits 1-0")
        _, _, _, file_size, ctype = BYTES_HEADER.unpack_from(data)
        if ctype not in CONTENT_TYPES:
            raise PacketFieldError("content_type", ctype, f"0..{len(CONTENT_TYPES) - 1}", 9)
        cap = n - BYTES_HEADER_SIZE_BYTES - CRC_SIZE_BYTES
        total = max(1, -(-file_size // cap))
        if total > MAX_PACKETS_PER_MESSAGE:
            raise PacketFieldError("file_size_bytes", file_size, "at most 65536 packets", 5)
        stage, seqs_of_stage = 0, range(total)
        protects, header = PayloadKind.BYTES, BYTES_HEADER_SIZE_BYTES
    blocks = len(block_bounds(len(seqs_of_stage))) - 1
    if block >= blocks:
        raise PacketFieldError("repair block", block, f"0..{blocks - 1}", 3, "seq high byte")
    seqs = block_source_seqs(seqs_of_stage, block)
    if share < len(seqs):
        raise PacketFieldError(
            "repair share", share, f"{len(seqs)}..255", 4, f"the block has {len(seqs)} sources"
        )
    return RepairPacket(
        n, FORMAT_VERSION, PayloadKind(kind), message_id, rid, total, data, protects, stage,
        block, share, len(seqs), seqs, header, data[header : n - CRC_SIZE_BYTES],
    )  # fmt: skip


def _check_frame(data: bytes, packet_size_bytes: int | None) -> int:
    """Length, CRC and version checks, in that order; return the kind (bits 3-2 of byte 0)."""
    n = len(data)
    if packet_size_bytes is not None and n != packet_size_bytes:
        cls = PacketTruncatedError if n < packet_size_bytes else PacketLengthError
        what = "missing" if n < packet_size_bytes else "extra"
        raise cls(
            f"packet is {n} bytes, expected {packet_size_bytes} "
            f"({abs(packet_size_bytes - n)} bytes {what})"
        )
    if n < MIN_PACKET_SIZE_BYTES:
        raise PacketTruncatedError(
            f"packet is {n} bytes, shorter than any valid packet ({MIN_PACKET_SIZE_BYTES} bytes: "
            f"{INDEX_HEADER_SIZE_BYTES}-byte header, payload, {CRC_SIZE_BYTES}-byte CRC)"
        )
    if n > MAX_PACKET_SIZE_BYTES:
        raise PacketLengthError(
            f"packet is {n} bytes, longer than any valid packet ({MAX_PACKET_SIZE_BYTES} bytes)"
        )
    body_end = n - CRC_SIZE_BYTES
    stored = int.from_bytes(data[body_end:], "big")
    computed = crc.crc32c_function(data[:body_end])
    if stored != computed:
        raise PacketCRCError(
            f"CRC-32C mismatch: trailer at byte offset {body_end} holds 0x{stored:08x}, bytes "
            f"0..{body_end - 1} give 0x{computed:08x}; the packet was corrupted"
        )
    version = data[0] >> 4
    if version != FORMAT_VERSION:
        hint = {
            0xF: " (0xF marks a fragment: rejoin it with Defragmenter)",
            1: " (version 1 began every stage in a new packet: encode the picture again)",
        }.get(version, "")
        raise PacketVersionError(
            f"format version {version} (byte 0, bits 7-4) is unknown; "
            f"this parser reads version {FORMAT_VERSION}{hint}"
        )
    return (data[0] >> 2) & 3


def parse_packet(
    data: bytes | bytearray | memoryview, packet_size_bytes: int | None = None
) -> IndexPacket | BytesPacket | RepairPacket:
    """Check and decode one packet; raise a :class:`PacketError` subclass naming the fault.

    Checks run in this order, and no field is read before the CRC has passed: length
    (:class:`PacketTruncatedError`, :class:`PacketLengthError`), CRC (:class:`PacketCRCError`),
    version (:class:`PacketVersionError`), fields (:class:`PacketFieldError`).

    >>> from satlink.packets import packetize_bytes
    >>> packet = packetize_bytes(b"hello", 20)[0]
    >>> parse_packet(packet).data
    b'hello'
    >>> parse_packet(packet[:-1], packet_size_bytes=20)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    satlink.packets.errors.PacketTruncatedError: packet is 19 bytes, ...
    """
    if type(data) is not bytes:
        data = bytes(data)  # an immutable copy: the bytes checked are the bytes kept
    kind = _check_frame(data, packet_size_bytes)
    n = len(data)
    if kind == 0:
        fields = _index_fields(data, n)
        return IndexPacket(
            *fields, unpack_at(data, INDEX_HEADER_SIZE_BYTES, fields[_F_COUNT], fields[_F_BITS])
        )
    if kind == 1:
        return _parse_bytes(data, n)
    return _parse_repair(data, n, kind)


def parse_packets(
    packets: Iterable[bytes | bytearray | memoryview | Packet],
    packet_size_bytes: int | None = None,
    *,
    errors: Literal["raise", "return"] = "raise",
) -> list[IndexPacket | BytesPacket | PacketError]:
    """Parse many packets at once: the same results as :func:`parse_packet` on each, faster.

    Every packet goes through the same checks as in :func:`parse_packet`; only the unpacking
    of indices is batched, one vectorised pass per packet size and bits per index. With
    ``errors="raise"`` the first error (in input order) is raised; with ``"return"`` the error
    takes its packet's place in the returned list.

    >>> import numpy as np
    >>> from codec.code import ProgressiveCode
    >>> from satlink.packets import packetize
    >>> code = ProgressiveCode(np.zeros((2, 4, 4), np.uint16), (64, 64), 10, 1)
    >>> good = packetize(code, 30)
    >>> out = parse_packets([good[0], good[1][:-1], good[3]], errors="return")
    >>> [type(p).__name__ for p in out]
    ['IndexPacket', 'PacketCRCError', 'IndexPacket']
    """
    out: list[IndexPacket | BytesPacket | PacketError | None] = []
    pending: dict[tuple[int, int], list[tuple[int, tuple]]] = {}  # (size, bits) -> fields
    for data in packets:
        if type(data) is not bytes:
            if isinstance(data, Packet):  # already parsed: passes through
                out.append(data)
                continue
            data = bytes(data)
        try:
            kind = _check_frame(data, packet_size_bytes)
            n = len(data)
            if kind == 0:
                fields = _index_fields(data, n)
                pending.setdefault((n, fields[_F_BITS]), []).append((len(out), fields))
                out.append(None)
            elif kind == 1:
                out.append(_parse_bytes(data, n))
            else:
                out.append(_parse_repair(data, n, kind))
        except PacketError as exc:
            if errors == "raise":
                raise
            out.append(exc)
    for (n, bits), items in pending.items():
        # All packets of one size and bits per index: unpack at full capacity in one pass;
        # each packet keeps a read-only view of its first `count` indices.
        capacity = (n - INDEX_HEADER_SIZE_BYTES - CRC_SIZE_BYTES) * 8 // bits
        gather, shifts, mask = unpack_plan(capacity, bits, INDEX_HEADER_SIZE_BYTES)
        raw = np.frombuffer(b"".join(f[_F_RAW] for _, f in items), dtype=np.uint8)
        words = np.take(raw.reshape(len(items), n), gather, axis=1).view(">u4")[..., 0]
        values = ((words >> shifts) & mask).astype(np.uint16)
        values.flags.writeable = False
        for row, (i, fields) in enumerate(items):
            out[i] = IndexPacket(*fields, values[row, : fields[_F_COUNT]])
    return out  # type: ignore[return-value]
