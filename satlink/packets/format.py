"""The wire format: version, sizes, header layouts, field limits and the checks on them.

Everything here is a fact of the byte layout that ``docs/PACKET_FORMAT.md`` describes; the other
modules of :mod:`satlink.packets` build and read packets from these definitions only, so a
format change starts (and ends) here. The ``struct`` layouts and the numpy record are the same
bytes, once for one packet and once for a whole message.

>>> from satlink.packets.format import INDEX_HEADER, latent_shape_for, downsample_log2_for
>>> INDEX_HEADER.size, DEFAULT_PACKET_SIZE_BYTES
(13, 360)
>>> latent_shape_for((500, 760), 4), downsample_log2_for((500, 760), (32, 48))
((32, 48), 4)
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Literal

import numpy as np

from satlink.config import DEFAULT_PACKET_SIZE_BYTES

__all__ = [
    "BYTES_HEADER",
    "BYTES_HEADER_SIZE_BYTES",
    "CONTENT_TYPES",
    "CONTENT_TYPE_CODES",
    "CRC_SIZE_BYTES",
    "DEFAULT_PACKET_SIZE_BYTES",
    "FORMAT_VERSION",
    "FRAGMENT_CRC_SIZE_BYTES",
    "FRAGMENT_HEADER",
    "FRAGMENT_HEADER_SIZE_BYTES",
    "FRAGMENT_MARKER",
    "FRAGMENT_REPAIR_MARKER",
    "INDEX_HEADER",
    "INDEX_HEADER_DTYPE",
    "INDEX_HEADER_SIZE_BYTES",
    "MAX_BITS_PER_INDEX",
    "MAX_DOWNSAMPLE_LOG2",
    "MAX_FRAGMENTS",
    "MAX_PACKETS_PER_MESSAGE",
    "MAX_PACKET_SIZE_BYTES",
    "MAX_POSITIONS_PER_STAGE",
    "MAX_STAGES",
    "MESSAGE_SEQ",
    "MIN_MTU_BYTES",
    "MIN_PACKET_SIZE_BYTES",
    "ORDERS",
    "Order",
    "PayloadKind",
    "byte0",
    "check_bits",
    "check_packet_size",
    "check_uint16",
    "downsample_log2_for",
    "latent_shape_for",
]

FORMAT_VERSION = 2  # 2: one index stream over the stages (satlink.packets.stream)
INDEX_HEADER_SIZE_BYTES = 13
BYTES_HEADER_SIZE_BYTES = 10
CRC_SIZE_BYTES = 4
# Header + CRC + 2 payload bytes, so that at least one index of up to 16 bits always fits.
MIN_PACKET_SIZE_BYTES = INDEX_HEADER_SIZE_BYTES + CRC_SIZE_BYTES + 2
MAX_PACKET_SIZE_BYTES = 0xFFFF
MAX_PACKETS_PER_MESSAGE = 1 << 16  # the sequence number is 16 bits
MAX_STAGES = 16  # 4-bit field
MAX_BITS_PER_INDEX = 16  # 4-bit field; ProgressiveCode allows 1..16
# Bounds what a header may make the reassembler allocate (16 stages x 2^18 positions x 3 bytes
# = 12 MiB); 2^18 positions is a 512 x 512 latent, 8192 x 8192 px at the codec's 1/16 scale.
MAX_POSITIONS_PER_STAGE = 1 << 18
MAX_DOWNSAMPLE_LOG2 = 15  # 4-bit field

FRAGMENT_MARKER = 0xF1  # high nibble 0xF: never a packet version; low nibble: fragment format 1
# A repair fragment (erasure code over a packet's fragments): fragment format 2. Readers of
# format 1 refuse it by its marker and still rejoin packets from the format-1 fragments.
FRAGMENT_REPAIR_MARKER = 0xF2
FRAGMENT_HEADER_SIZE_BYTES = 7
FRAGMENT_CRC_SIZE_BYTES = 2
MIN_MTU_BYTES = FRAGMENT_HEADER_SIZE_BYTES + FRAGMENT_CRC_SIZE_BYTES + 1
MAX_FRAGMENTS = 255  # 8-bit count

ORDERS: tuple[str, ...] = ("stage-major", "position-major")  # wire value = position in tuple
Order = Literal["stage-major", "position-major"]

# Media types a bytes-kind message can declare (1 byte on the wire). 0 means "unspecified".
CONTENT_TYPES: dict[int, str] = {
    0: "application/octet-stream",
    1: "image/avif",
    2: "image/jpeg",
    3: "image/png",
    4: "image/webp",
    5: "image/jxl",
    6: "image/heic",
}
CONTENT_TYPE_CODES: dict[str, int] = {name: code for code, name in CONTENT_TYPES.items()}

# Byte 0 | message id | seq | model id | stages-1, bits-1 | height px | width px | stage, ds_log2
INDEX_HEADER = struct.Struct(">BHHHBHHB")
# Byte 0 | message id | seq | file size bytes | content type
BYTES_HEADER = struct.Struct(">BHHIB")
# Marker | message id | packet seq | fragment index | fragment count
FRAGMENT_HEADER = struct.Struct(">BHHBB")
MESSAGE_SEQ = struct.Struct(">HH")  # bytes 1-4 of every packet
# The same layout as a numpy record, to build the headers of a whole message at once.
INDEX_HEADER_DTYPE = np.dtype(
    [
        ("byte0", "u1"),
        ("message_id", ">u2"),
        ("seq", ">u2"),
        ("model_id", ">u2"),
        ("stages_bits", "u1"),
        ("height_px", ">u2"),
        ("width_px", ">u2"),
        ("stage_ds", "u1"),
    ]
)
assert INDEX_HEADER.size == INDEX_HEADER_DTYPE.itemsize == INDEX_HEADER_SIZE_BYTES
assert BYTES_HEADER.size == BYTES_HEADER_SIZE_BYTES
assert FRAGMENT_HEADER.size == FRAGMENT_HEADER_SIZE_BYTES


class PayloadKind(IntEnum):
    """What a packet's payload holds (2 bits of byte 0)."""

    INDICES = 0  # bit-packed RVQ indices of a ProgressiveCode
    BYTES = 1  # a slice of an opaque file (AVIF, JPEG, ...)
    REPAIR_INDICES = 2  # an erasure-code repair symbol over a block of INDICES packets
    REPAIR_BYTES = 3  # an erasure-code repair symbol over a block of BYTES packets


def byte0(kind: int, order_bit: int = 0, interleave_bit: int = 0) -> int:
    """Byte 0 of a packet: version (bits 7-4), kind (3-2), order (1), interleave (0).

    >>> hex(byte0(PayloadKind.BYTES))
    '0x24'
    """
    return (FORMAT_VERSION << 4) | (kind << 2) | (order_bit << 1) | interleave_bit


def check_packet_size(packet_size_bytes: int) -> None:
    """Raise ``TypeError`` / ``ValueError`` unless the format can carry packets of this size."""
    if not isinstance(packet_size_bytes, int | np.integer):
        raise TypeError(f"packet_size_bytes must be an int, got {type(packet_size_bytes).__name__}")
    if not MIN_PACKET_SIZE_BYTES <= packet_size_bytes <= MAX_PACKET_SIZE_BYTES:
        raise ValueError(
            f"packet_size_bytes = {packet_size_bytes} is outside {MIN_PACKET_SIZE_BYTES}.."
            f"{MAX_PACKET_SIZE_BYTES}: a packet needs a {INDEX_HEADER_SIZE_BYTES}-byte header, "
            f"a {CRC_SIZE_BYTES}-byte CRC and at least 2 payload bytes"
        )


def check_bits(bits_per_index: int) -> None:
    """Raise ``ValueError`` unless the 4-bit header field can carry ``bits_per_index``."""
    if not 1 <= bits_per_index <= MAX_BITS_PER_INDEX:
        raise ValueError(f"bits_per_index = {bits_per_index} is outside 1..{MAX_BITS_PER_INDEX}")


def check_uint16(name: str, value: int) -> None:
    """Raise ``ValueError`` unless ``value`` fits a 16-bit header field."""
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{name} = {value} must fit 16 bits (0..65535)")


def latent_shape_for(image_size: tuple[int, int], downsample_log2: int) -> tuple[int, int]:
    """The latent ``(h, w)`` the header implies: ``ceil(image_size / 2**downsample_log2)``."""
    f = 1 << downsample_log2
    return -(-image_size[0] // f), -(-image_size[1] // f)


def downsample_log2_for(image_size: tuple[int, int], latent_shape: tuple[int, int]) -> int:
    """The ``k`` with ``latent_shape_for(image_size, k) == latent_shape``, or ``ValueError``."""
    for k in range(MAX_DOWNSAMPLE_LOG2 + 1):
        if latent_shape_for(image_size, k) == latent_shape:
            return k
    raise ValueError(
        f"latent shape {latent_shape} is not ceil(image_size / 2**k) of image_size {image_size} "
        f"for any k in 0..{MAX_DOWNSAMPLE_LOG2}; the packet format derives the latent geometry "
        "that way (as codec.Codec.latent_shape does)"
    )
