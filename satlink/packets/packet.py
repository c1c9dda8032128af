"""What a parsed packet is: :class:`IndexPacket` (RVQ indices) or :class:`BytesPacket` (a slice
of a file), both with the fields every packet has (:class:`Packet`) and the exact bytes checked.

``to_bytes`` encodes the fields again and gives back ``raw`` for every packet the parser
accepts: the encoding is canonical, one set of fields per byte string.

>>> from satlink.packets import packetize_bytes, parse_packet
>>> p = parse_packet(packetize_bytes(b"hello", 20, message_id=4)[0])
>>> type(p).__name__, p.message_id, p.data, p.to_bytes() == p.raw
('BytesPacket', 4, b'hello', True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from satlink.packets.crc import seal
from satlink.packets.format import (
    CONTENT_TYPE_CODES,
    CRC_SIZE_BYTES,
    INDEX_HEADER_SIZE_BYTES,
    PayloadKind,
)
from satlink.packets.packetize import encode_bytes_packet, encode_index_packet
from satlink.packets.stream import slot_offsets

__all__ = ["BytesPacket", "IndexPacket", "Packet", "RepairPacket"]


@dataclass(eq=False, slots=True)
class Packet:
    """Fields every packet has. ``parse_packet`` returns an :class:`IndexPacket` or a
    :class:`BytesPacket`; ``raw`` holds the exact bytes that were checked.

    Treat packets as read-only (``indices`` is a read-only array). They are not frozen
    dataclasses because a frozen ``__init__`` costs ~4 us per packet, a fifth of the
    parse budget (docs/BENCHMARKS.md).
    """

    size_bytes: int
    version: int
    kind: PayloadKind
    message_id: int
    seq: int
    total: int  # packets in the whole message (derived: see PACKET_FORMAT.md)
    raw: bytes


@dataclass(eq=False, slots=True)
class IndexPacket(Packet):
    """A packet of RVQ indices: ``indices[i]`` belongs at stage ``stages[i]``, flat position
    ``positions[i]`` of the ``[stages, h, w]`` index array. The packet holds the message's
    index stream from slot :attr:`first_slot` on (:mod:`satlink.packets.stream`), so it may
    end one stage and begin the next; :attr:`stage` is the stage it starts in."""

    order: str  # "stage-major" or "position-major"
    interleave: bool
    model_id: int
    num_stages: int
    bits_per_index: int
    image_size: tuple[int, int]  # (height_px, width_px)
    downsample_log2: int
    latent_shape: tuple[int, int]  # (h, w) = ceil(image_size / 2**downsample_log2)
    stage: int  # the stage of the packet's first index
    first_slot: int  # offset of the first index into the message's index stream
    num_indices: int
    indices: np.ndarray  # uint16 [num_indices], read-only

    @property
    def capacity(self) -> int:
        """Indices a packet of this size carries (the last packet of a message may hold fewer)."""
        return (
            (self.size_bytes - INDEX_HEADER_SIZE_BYTES - CRC_SIZE_BYTES) * 8 // self.bits_per_index
        )

    @property
    def offsets(self) -> np.ndarray:
        """Flat offset of each of :attr:`indices` into the ``[stages, h, w]`` index array:
        ``stage * h * w + y * w + x`` (what the reassembler scatters to)."""
        h, w = self.latent_shape
        return slot_offsets(
            self.order, self.num_stages, h, w, self.interleave, self.capacity,
            self.first_slot, self.num_indices,
        )  # fmt: skip

    @property
    def stages(self) -> np.ndarray:
        """Stage (0-based) of each of :attr:`indices`."""
        return self.offsets // (self.latent_shape[0] * self.latent_shape[1])

    @property
    def positions(self) -> np.ndarray:
        """Flat latent positions (``y * w + x``) of :attr:`indices`."""
        return self.offsets % (self.latent_shape[0] * self.latent_shape[1])

    def to_bytes(self) -> bytes:
        """Encode the fields again; equals :attr:`raw` for every packet the parser accepts."""
        return encode_index_packet(
            self.size_bytes,
            self.message_id,
            self.seq,
            self.order,
            self.interleave,
            self.model_id,
            self.num_stages,
            self.bits_per_index,
            self.image_size,
            self.stage,
            self.downsample_log2,
            self.indices,
        )


@dataclass(eq=False, slots=True)
class BytesPacket(Packet):
    """A packet holding ``data``, the slice ``[byte_offset, byte_offset + len(data))`` of a
    file of ``file_size_bytes`` bytes."""

    file_size_bytes: int
    content_type: str
    byte_offset: int
    data: bytes

    def to_bytes(self) -> bytes:
        """Encode the fields again; equals :attr:`raw` for every packet the parser accepts."""
        return encode_bytes_packet(
            self.size_bytes,
            self.message_id,
            self.seq,
            self.file_size_bytes,
            CONTENT_TYPE_CODES[self.content_type],
            self.data,
        )


@dataclass(eq=False, slots=True)
class RepairPacket(Packet):
    """An erasure-code repair packet (kinds 2 and 3): share :attr:`share` of the Reed-Solomon
    code over block :attr:`block` of stage :attr:`stage` (always 0 for a file message).

    ``seq`` holds ``block << 8 | share`` (the repair's identity within the message), ``total``
    the message's source packet count. :attr:`source_seqs` are the ``seq`` of the block's
    source packets, in share order (share ``i < block_sources`` is ``source_seqs[i]``);
    :attr:`symbol` is the repair symbol, as long as a source packet's payload. The header bytes
    after ``seq`` repeat the protected message's (geometry, or file size and type), so the
    packet is checked and placed on its own, and a lost source packet can be rebuilt exactly.
    """

    protects: PayloadKind  # INDICES or BYTES: the kind of the source packets
    stage: int
    block: int
    share: int
    block_sources: int  # k: source packets in the block
    source_seqs: tuple[int, ...]
    header_size_bytes: int  # of the source packets (13 or 10), as of this packet
    symbol: bytes

    def to_bytes(self) -> bytes:
        """Encode again; equals :attr:`raw` for every packet the parser accepts."""
        return seal(self.raw[: self.header_size_bytes] + self.symbol)

    def source_packet(self, seq: int, symbol: bytes) -> bytes:
        """The source packet ``seq`` of this block rebuilt from its payload ``symbol``: the
        source header is this header with the source kind and ``seq`` put back, then the CRC."""
        head = bytearray(self.raw[: self.header_size_bytes])
        head[0] = (head[0] & 0xF3) | (int(self.protects) << 2)
        head[3:5] = seq.to_bytes(2, "big")
        return seal(bytes(head) + symbol)
