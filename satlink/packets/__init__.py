"""Fixed-size, self-describing, CRC-protected packets for RVQ indices and for opaque files.

Every packet can be placed without any other packet: its header carries the message's geometry
and its own sequence number, and the stage, first index position and index count follow from
those (see ``docs/PACKET_FORMAT.md`` for the byte layout and the reasons behind it).

Sending: :func:`packetize` (a ``ProgressiveCode``), :func:`packetize_bytes` (a file),
:func:`fragment` (for services with a smaller message cap), :func:`plan_transmission` (the
messages a sender puts on the link). Receiving: :func:`parse_packet` / :func:`parse_packets`,
:class:`Reassembler` (or :func:`reassemble`, :func:`reassemble_bytes`), :class:`Defragmenter`.
Sizing: :func:`index_capacity`, :func:`packets_for_stages`, :func:`bytes_for_stages`,
:func:`payload_efficiency`. Every malformed input raises a :class:`PacketError` subclass that
names the fault.

One module per concern: ``format`` (constants, header layouts, field checks), ``crc``,
``errors``, ``sizing``, ``bitpack``, ``packetize`` (position order, interleaving, encoding),
``packet`` (the parsed packet types), ``parse``, ``reassembly``, ``fragments``, ``config``
(the scenario's ``[packets]`` and ``[fec]`` tables), ``plan`` (the transmit plan), ``files``
(packet files), ``fec`` (erasure coding: repair packets and fragments, unequal protection) and
``identity`` (message ids derived from the content).
Import from the package: the names below are its public face.

>>> import numpy as np
>>> from codec.code import ProgressiveCode
>>> rng = np.random.default_rng(7)
>>> code = ProgressiveCode(rng.integers(0, 1024, (5, 8, 8), dtype=np.uint16), (128, 128), 10, 7)
>>> packets = packetize(code, packet_size_bytes=70, message_id=1)   # 42 indices a packet
>>> len(packets), {len(p) for p in packets}
(8, {70})
>>> msg = reassemble(packets[:4])        # the first 168 indices arrived, nothing else
>>> msg.received.sum(axis=(1, 2)).tolist()
[64, 64, 40, 0, 0]
>>> bool((msg.indices[:2] == code.indices[:2]).all())
True
"""

from __future__ import annotations

from satlink.packets.bitpack import pack_indices, unpack_indices
from satlink.packets.blocks import FEC_SCHEMES, MAX_BLOCK_SOURCES, PLACEMENTS, block_of
from satlink.packets.config import FecConfig, PacketsConfig
from satlink.packets.crc import CRC_USES_C_EXTENSION, crc16_ccitt_false, crc32c, require_c_crc
from satlink.packets.errors import (
    PacketConsistencyError,
    PacketCRCError,
    PacketError,
    PacketFieldError,
    PacketLengthError,
    PacketTruncatedError,
    PacketVersionError,
)
from satlink.packets.fec import ProtectedPackets, protect, repair_packets
from satlink.packets.files import PACKET_FILE_PATTERN, encode_to_files, write_packet_files
from satlink.packets.format import (
    BYTES_HEADER_SIZE_BYTES,
    CONTENT_TYPES,
    CRC_SIZE_BYTES,
    DEFAULT_PACKET_SIZE_BYTES,
    FORMAT_VERSION,
    FRAGMENT_CRC_SIZE_BYTES,
    FRAGMENT_HEADER_SIZE_BYTES,
    FRAGMENT_MARKER,
    FRAGMENT_REPAIR_MARKER,
    INDEX_HEADER_SIZE_BYTES,
    MAX_BITS_PER_INDEX,
    MAX_DOWNSAMPLE_LOG2,
    MAX_FRAGMENTS,
    MAX_PACKET_SIZE_BYTES,
    MAX_PACKETS_PER_MESSAGE,
    MAX_POSITIONS_PER_STAGE,
    MAX_STAGES,
    MIN_MTU_BYTES,
    MIN_PACKET_SIZE_BYTES,
    ORDERS,
    Order,
    PayloadKind,
)
from satlink.packets.fragments import Defragmenter, Fragment, fragment, parse_fragment
from satlink.packets.identity import content_message_id, file_message_id
from satlink.packets.packet import BytesPacket, IndexPacket, Packet, RepairPacket
from satlink.packets.packetize import packetize, packetize_bytes
from satlink.packets.parse import parse_packet, parse_packets
from satlink.packets.plan import TransmitPlan, plan_transmission
from satlink.packets.reassembly import (
    BytesMessage,
    IndexMessage,
    Reassembler,
    reassemble,
    reassemble_bytes,
)
from satlink.packets.sizing import (
    byte_capacity,
    bytes_for_stages,
    fragment_count,
    index_capacity,
    packets_for_stages,
    packets_per_stage,
    payload_efficiency,
)
from satlink.packets.stream import position_order

__all__ = [
    "BYTES_HEADER_SIZE_BYTES",
    "CONTENT_TYPES",
    "CRC_SIZE_BYTES",
    "CRC_USES_C_EXTENSION",
    "DEFAULT_PACKET_SIZE_BYTES",
    "FEC_SCHEMES",
    "FORMAT_VERSION",
    "FRAGMENT_CRC_SIZE_BYTES",
    "FRAGMENT_HEADER_SIZE_BYTES",
    "FRAGMENT_MARKER",
    "FRAGMENT_REPAIR_MARKER",
    "INDEX_HEADER_SIZE_BYTES",
    "MAX_BITS_PER_INDEX",
    "MAX_BLOCK_SOURCES",
    "MAX_DOWNSAMPLE_LOG2",
    "MAX_FRAGMENTS",
    "MAX_PACKETS_PER_MESSAGE",
    "MAX_PACKET_SIZE_BYTES",
    "MAX_POSITIONS_PER_STAGE",
    "MAX_STAGES",
    "MIN_MTU_BYTES",
    "MIN_PACKET_SIZE_BYTES",
    "ORDERS",
    "PACKET_FILE_PATTERN",
    "PLACEMENTS",
    "BytesMessage",
    "BytesPacket",
    "Defragmenter",
    "FecConfig",
    "Fragment",
    "IndexMessage",
    "IndexPacket",
    "Order",
    "Packet",
    "PacketCRCError",
    "PacketConsistencyError",
    "PacketError",
    "PacketFieldError",
    "PacketLengthError",
    "PacketTruncatedError",
    "PacketVersionError",
    "PacketsConfig",
    "PayloadKind",
    "ProtectedPackets",
    "Reassembler",
    "RepairPacket",
    "TransmitPlan",
    "block_of",
    "byte_capacity",
    "bytes_for_stages",
    "content_message_id",
    "crc16_ccitt_false",
    "crc32c",
    "encode_to_files",
    "file_message_id",
    "fragment",
    "fragment_count",
    "index_capacity",
    "pack_indices",
    "packetize",
    "packetize_bytes",
    "packets_for_stages",
    "packets_per_stage",
    "parse_fragment",
    "parse_packet",
    "parse_packets",
    "payload_efficiency",
    "plan_transmission",
    "position_order",
    "protect",
    "reassemble",
    "reassemble_bytes",
    "repair_packets",
    "require_c_crc",
    "unpack_indices",
    "write_packet_files",
]
