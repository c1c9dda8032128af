"""Fixed-size, self-describing, CRC-protected packets for RVQ indices and for opaque files.

Every packet can be placed without any other packet: its header carries the message's geometry
and its own sequence number, and the stage, first index position and index count follow from
those (see ``docs/PACKET_FORMAT.md`` for the byte layout and the reasons behind it).

Sending: :func:`packetize` (a ``ProgressiveCode``), :func:`packetize_bytes` (a file),
:func:`fragment` (for services with a smaller message cap). Receiving: :func:`parse_packet` /
:func:`parse_packets`, :class:`Reassembler` (or :func:`reassemble`, :func:`reassemble_bytes`),
:class:`Defragmenter`. Sizing: :func:`index_capacity`, :func:`packets_for_stages`,
:func:`bytes_for_stages`, :func:`payload_efficiency`. Every malformed input raises a
:class:`PacketError` subclass that names the fault.

>>> import numpy as np
>>> from codec.code import ProgressiveCode
>>> rng = np.random.default_rng(7)
>>> code = ProgressiveCode(rng.integers(0, 1024, (5, 2, 3), dtype=np.uint16), (32, 48), 10, 7)
>>> packets = packetize(code, packet_size_bytes=70, message_id=1)
>>> len(packets), {len(p) for p in packets}
(5, {70})
>>> msg = reassemble(packets[:2])        # the first two stages arrived, nothing else
>>> msg.received.sum(axis=(1, 2)).tolist()
[6, 6, 0, 0, 0]
>>> bool((msg.indices[:2] == code.indices[:2]).all())
True
"""

from __future__ import annotations

import math
import struct
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import crcmod.crcmod
import crcmod.predefined
import numpy as np

if TYPE_CHECKING:
    # Only the type: importing codec at run time pulls in torch (seconds), which transport-only
    # users (channel simulation, decoding file messages) do not need. IndexMessage.code imports
    # it lazily.
    from codec.code import ProgressiveCode

__all__ = [
    "BYTES_HEADER_SIZE_BYTES",
    "CONTENT_TYPES",
    "CRC_SIZE_BYTES",
    "CRC_USES_C_EXTENSION",
    "DEFAULT_PACKET_SIZE_BYTES",
    "FORMAT_VERSION",
    "FRAGMENT_CRC_SIZE_BYTES",
    "FRAGMENT_HEADER_SIZE_BYTES",
    "INDEX_HEADER_SIZE_BYTES",
    "MAX_FRAGMENTS",
    "MAX_PACKETS_PER_MESSAGE",
    "MAX_PACKET_SIZE_BYTES",
    "MAX_POSITIONS_PER_STAGE",
    "MAX_STAGES",
    "MIN_MTU_BYTES",
    "MIN_PACKET_SIZE_BYTES",
    "ORDERS",
    "BytesMessage",
    "BytesPacket",
    "Defragmenter",
    "Fragment",
    "IndexMessage",
    "IndexPacket",
    "Packet",
    "PacketCRCError",
    "PacketConsistencyError",
    "PacketError",
    "PacketFieldError",
    "PacketLengthError",
    "PacketTruncatedError",
    "PacketVersionError",
    "PayloadKind",
    "Reassembler",
    "byte_capacity",
    "bytes_for_stages",
    "crc16_ccitt_false",
    "crc32c",
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
    "position_order",
    "reassemble",
    "reassemble_bytes",
    "require_c_crc",
    "unpack_indices",
]

# --------------------------------------------------------------------------------------------
# Format constants
# --------------------------------------------------------------------------------------------

FORMAT_VERSION = 1
DEFAULT_PACKET_SIZE_BYTES = 360
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
_CONTENT_TYPE_CODES = {name: code for code, name in CONTENT_TYPES.items()}

# Byte 0 | message id | seq | model id | stages-1, bits-1 | height px | width px | stage, ds_log2
_INDEX_HEADER = struct.Struct(">BHHHBHHB")
# Byte 0 | message id | seq | file size bytes | content type
_BYTES_HEADER = struct.Struct(">BHHIB")
# Marker | message id | packet seq | fragment index | fragment count
_FRAGMENT_HEADER = struct.Struct(">BHHBB")
_MESSAGE_SEQ = struct.Struct(">HH")  # bytes 1-4 of every packet
# The same layout as a numpy record, to build the headers of a whole message at once.
_INDEX_HEADER_DTYPE = np.dtype(
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
assert _INDEX_HEADER.size == _INDEX_HEADER_DTYPE.itemsize == INDEX_HEADER_SIZE_BYTES
assert _BYTES_HEADER.size == BYTES_HEADER_SIZE_BYTES
assert _FRAGMENT_HEADER.size == FRAGMENT_HEADER_SIZE_BYTES

# --------------------------------------------------------------------------------------------
# CRC
# --------------------------------------------------------------------------------------------

# CRC-32C (Castagnoli) protects packets: Hamming distance 6 up to 5243 bits, so every 1..5-bit
# error in a packet of up to 655 bytes is caught, and a random corruption slips through with
# probability 2^-32. Fragments carry CRC-16/CCITT-FALSE only to drop a damaged fragment early;
# the packet's CRC-32C still checks the rejoined packet end to end. Reasons: PACKET_FORMAT.md.
_crc32c = crcmod.predefined.mkCrcFun("crc-32c")
_crc16 = crcmod.predefined.mkCrcFun("crc-ccitt-false")

CRC_USES_C_EXTENSION: bool = bool(getattr(crcmod.crcmod, "_usingExtension", False))
if not CRC_USES_C_EXTENSION:  # pragma: no cover - depends on the installed wheel
    warnings.warn(
        "crcmod is running its pure-Python CRC (about 25x slower); install crcmod-plus, which "
        "ships the C extension as wheels",
        RuntimeWarning,
        stacklevel=2,
    )


def require_c_crc() -> None:
    """Raise ``RuntimeError`` unless crcmod computes CRCs with its C extension.

    >>> require_c_crc()   # silent where crcmod-plus wheels are installed
    """
    if not CRC_USES_C_EXTENSION:
        raise RuntimeError(
            "crcmod's C extension is not in use (crcmod.crcmod._usingExtension is False); "
            "`pip install crcmod-plus` provides it as a wheel"
        )


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C (Castagnoli, as iSCSI) of ``data``; the packet trailer.

    >>> hex(crc32c(b"123456789"))
    '0xe3069283'
    """
    return _crc32c(data)


def crc16_ccitt_false(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/CCITT-FALSE (as CCSDS) of ``data``; the fragment trailer.

    >>> hex(crc16_ccitt_false(b"123456789"))
    '0x29b1'
    """
    return _crc16(data)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class PacketError(ValueError):
    """Base of every error raised for malformed packets or fragments."""


class PacketLengthError(PacketError):
    """The packet (or fragment) has the wrong number of bytes."""


class PacketTruncatedError(PacketLengthError):
    """The packet (or fragment) is shorter than it must be: bytes were cut off."""


class PacketCRCError(PacketError):
    """The stored CRC does not match the bytes: the packet was corrupted."""


class PacketVersionError(PacketError):
    """The packet's format version (or the fragment marker) is not one this parser reads."""


class PacketFieldError(PacketError):
    """A header field holds a value outside its allowed range."""

    def __init__(self, field: str, value: object, allowed: str, offset: int, why: str = "") -> None:
        self.field, self.value, self.allowed, self.offset = field, value, allowed, offset
        text = f"header field {field} = {value} at byte offset {offset} is out of range"
        text += f" (allowed: {allowed})"
        super().__init__(text + (f"; {why}" if why else ""))


class PacketConsistencyError(PacketError):
    """A packet disagrees with earlier packets (or fragments) of the same message."""

    def __init__(
        self, message_id: int, seq: int, field: str, value: object, earlier: object
    ) -> None:
        self.message_id, self.seq, self.field = message_id, seq, field
        self.value, self.earlier = value, earlier
        super().__init__(
            f"message {message_id}, packet seq {seq}: {field} = {value} disagrees with earlier "
            f"packets of the same message ({field} = {earlier}); packet rejected"
        )


# --------------------------------------------------------------------------------------------
# Sizes and capacities
# --------------------------------------------------------------------------------------------


class PayloadKind(IntEnum):
    """What a packet's payload holds (2 bits of byte 0)."""

    INDICES = 0  # bit-packed RVQ indices of a ProgressiveCode
    BYTES = 1  # a slice of an opaque file (AVIF, JPEG, ...)


_KIND_INDICES, _KIND_BYTES = PayloadKind.INDICES, PayloadKind.BYTES  # plain lookups when parsing


def _check_packet_size(packet_size_bytes: int) -> None:
    if not isinstance(packet_size_bytes, int | np.integer):
        raise TypeError(f"packet_size_bytes must be an int, got {type(packet_size_bytes).__name__}")
    if not MIN_PACKET_SIZE_BYTES <= packet_size_bytes <= MAX_PACKET_SIZE_BYTES:
        raise ValueError(
            f"packet_size_bytes = {packet_size_bytes} is outside {MIN_PACKET_SIZE_BYTES}.."
            f"{MAX_PACKET_SIZE_BYTES}: a packet needs a {INDEX_HEADER_SIZE_BYTES}-byte header, "
            f"a {CRC_SIZE_BYTES}-byte CRC and at least 2 payload bytes"
        )


def _check_bits(bits_per_index: int) -> None:
    if not 1 <= bits_per_index <= MAX_BITS_PER_INDEX:
        raise ValueError(f"bits_per_index = {bits_per_index} is outside 1..{MAX_BITS_PER_INDEX}")


def index_capacity(
    packet_size_bytes: int = DEFAULT_PACKET_SIZE_BYTES, bits_per_index: int = 10
) -> int:
    """How many indices one packet carries.

    >>> index_capacity(360), index_capacity(340), index_capacity(70)
    (274, 258, 42)
    """
    _check_packet_size(packet_size_bytes)
    _check_bits(bits_per_index)
    payload_bits = (packet_size_bytes - INDEX_HEADER_SIZE_BYTES - CRC_SIZE_BYTES) * 8
    return payload_bits // bits_per_index


def byte_capacity(packet_size_bytes: int = DEFAULT_PACKET_SIZE_BYTES) -> int:
    """How many file bytes one bytes-kind packet carries.

    >>> byte_capacity(360)
    346
    """
    _check_packet_size(packet_size_bytes)
    return packet_size_bytes - BYTES_HEADER_SIZE_BYTES - CRC_SIZE_BYTES


def payload_efficiency(
    packet_size_bytes: int = DEFAULT_PACKET_SIZE_BYTES, bits_per_index: int = 10
) -> float:
    """Index bits over total bits of one full packet (header, padding and CRC are overhead).

    >>> round(payload_efficiency(360), 4)
    0.9514
    """
    cap = index_capacity(packet_size_bytes, bits_per_index)
    return cap * bits_per_index / (packet_size_bytes * 8)


def _geometry(
    code_or_latent_shape: ProgressiveCode | tuple[int, int], bits_per_index: int | None
) -> tuple[int, int]:
    # Accept a ProgressiveCode (its latent shape and bits) or a bare (h, w) shape.
    if isinstance(code_or_latent_shape, tuple | list):
        h, w = code_or_latent_shape
        return int(h) * int(w), 10 if bits_per_index is None else bits_per_index
    code = code_or_latent_shape
    h, w = code.latent_shape
    return h * w, code.bits_per_index if bits_per_index is None else bits_per_index


def packets_per_stage(
    code_or_latent_shape: ProgressiveCode | tuple[int, int],
    *,
    bits_per_index: int | None = None,
    packet_size_bytes: int = DEFAULT_PACKET_SIZE_BYTES,
) -> int:
    """Packets that carry one stage (packets never mix stages, so the last one is partly empty).

    Takes a ``ProgressiveCode`` or a latent shape ``(h, w)`` (then ``bits_per_index``
    defaults to 10).

    >>> packets_per_stage((32, 48))          # 1536 indices, 274 per packet
    6
    """
    positions, bits = _geometry(code_or_latent_shape, bits_per_index)
    return -(-positions // index_capacity(packet_size_bytes, bits))


def packets_for_stages(
    code_or_latent_shape: ProgressiveCode | tuple[int, int],
    stages: int,
    *,
    bits_per_index: int | None = None,
    packet_size_bytes: int = DEFAULT_PACKET_SIZE_BYTES,
) -> int:
    """Packets that carry the first ``stages`` stages (headers and partial packets included).

    >>> packets_for_stages((32, 48), 2)      # a 512 x 768 px image at 1/16, stages 1-2
    12
    >>> packets_for_stages((32, 48), 2, packet_size_bytes=70)
    74
    """
    if stages < 0:
        raise ValueError(f"stages = {stages} must be >= 0")
    return stages * packets_per_stage(
        code_or_latent_shape, bits_per_index=bits_per_index, packet_size_bytes=packet_size_bytes
    )


def bytes_for_stages(
    code_or_latent_shape: ProgressiveCode | tuple[int, int],
    stages: int,
    *,
    bits_per_index: int | None = None,
    packet_size_bytes: int = DEFAULT_PACKET_SIZE_BYTES,
    mtu_bytes: int | None = None,
) -> int:
    """Bytes sent for the first ``stages`` stages, counting headers, padding and CRCs.

    With ``mtu_bytes`` each packet is split into fragments no larger than that, and the
    fragment headers and CRCs count too. For codec evaluation, which wants a
    ``(code, k) -> bytes`` callable: ``functools.partial(bytes_for_stages, packet_size_bytes=360)``.

    >>> bytes_for_stages((32, 48), 2)
    4320
    >>> bytes_for_stages((32, 48), 2, mtu_bytes=70)   # 360-byte packets over 70-byte messages
    4968
    """
    n = packets_for_stages(
        code_or_latent_shape,
        stages,
        bits_per_index=bits_per_index,
        packet_size_bytes=packet_size_bytes,
    )
    if mtu_bytes is None:
        return n * packet_size_bytes
    frags = fragment_count(packet_size_bytes, mtu_bytes)
    overhead = frags * (FRAGMENT_HEADER_SIZE_BYTES + FRAGMENT_CRC_SIZE_BYTES)
    return n * (packet_size_bytes + overhead)


# --------------------------------------------------------------------------------------------
# Position order (interleaving) and bit packing
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _position_order(h: int, w: int, interleave: bool) -> np.ndarray:
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

    Packet ``j`` of a stage carries ``order[j * capacity : (j + 1) * capacity]``. Without
    interleaving that is raster order; with it, a deterministic ordered-dither permutation,
    so that a lost packet leaves scattered single holes instead of a band of rows.

    >>> position_order((2, 2)).tolist(), position_order((2, 2), interleave=True).tolist()
    ([0, 1, 2, 3], [0, 3, 1, 2])
    """
    h, w = (int(v) for v in latent_shape)
    if h < 1 or w < 1:
        raise ValueError(f"latent_shape must be positive, got {latent_shape}")
    return _position_order(h, w, bool(interleave))


def _pack_rows(rows: np.ndarray, bits_per_index: int, out: np.ndarray) -> np.ndarray:
    """Bit-pack ``[P, n]`` indices MSB first into the zeroed ``[P, payload_bytes]`` uint8
    array ``out`` (returned); bits past the last index stay zero."""
    p, n = rows.shape
    b = bits_per_index
    group = 8 // math.gcd(b, 8)  # indices per whole number of bytes (4 for 10-bit indices)
    group_bits = group * b
    if group_bits > 64:
        # b = 9, 11, 13, 15: a group spans more than 64 bits; go through one byte per bit.
        bits = np.unpackbits(rows.astype(">u2").view(np.uint8).reshape(p, n, 2), axis=2)
        packed = np.packbits(bits[:, :, 16 - b :].reshape(p, n * b), axis=1)
        keep = min(packed.shape[1], out.shape[1])
        out[:, :keep] = packed[:, :keep]
        return out
    # Fast path (b = 10 among others): each group of indices becomes one uint64 with the
    # group's bits at the top, MSB first (a dot product: the fields do not overlap), and its
    # leading group_bits / 8 big-endian bytes are copied out.
    groups = -(-n // group)
    padded = np.zeros((p, groups * group), dtype=np.uint64)
    padded[:, :n] = rows
    weights = np.uint64(1) << np.arange(64 - b, 63 - group_bits, -b, dtype=np.uint64)
    words = padded.reshape(p, groups, group) @ weights
    nbytes = group_bits // 8
    big_endian = words.astype(">u8").view(np.uint8).reshape(p, groups, 8)
    # Zero indices that pad the last group only add zero bits, so cutting them is safe.
    full = min(groups, out.shape[1] // nbytes)
    out[:, : full * nbytes].reshape(p, full, nbytes)[...] = big_endian[:, :full, :nbytes]
    rest = min(out.shape[1] - full * nbytes, (groups - full) * nbytes)
    if rest > 0:
        out[:, full * nbytes : full * nbytes + rest] = big_endian[:, full, :rest]
    return out


@lru_cache(maxsize=256)
def _unpack_plan(
    count: int, bits_per_index: int, offset: int
) -> tuple[np.ndarray, np.ndarray, np.uint32]:
    # For index i starting at bit s = i*b: read the 4 bytes from byte s//8 as a big-endian
    # uint32, then shift right by 32 - b - s%8 and mask. Needs b + 7 <= 32 and 3 readable
    # bytes after the last start byte, which the 4-byte CRC trailer always provides.
    starts = np.arange(count, dtype=np.int64) * bits_per_index
    gather = (offset + (starts >> 3))[:, None] + np.arange(4)
    shifts = (32 - bits_per_index - (starts & 7)).astype(np.uint32)
    gather.setflags(write=False)
    shifts.setflags(write=False)
    return gather, shifts, np.uint32((1 << bits_per_index) - 1)


def _unpack(data: bytes, offset: int, count: int, bits_per_index: int) -> np.ndarray:
    gather, shifts, mask = _unpack_plan(count, bits_per_index, offset)
    words = np.frombuffer(data, dtype=np.uint8)[gather].view(">u4").ravel()
    out = ((words >> shifts) & mask).astype(np.uint16)
    out.flags.writeable = False
    return out


def pack_indices(indices: np.ndarray, bits_per_index: int) -> bytes:
    """Bit-pack indices MSB first, ``bits_per_index`` bits each, zero-padded to whole bytes.

    >>> pack_indices(np.array([1, 1023, 0]), 10).hex()
    '007ff000'
    """
    _check_bits(bits_per_index)
    idx = np.asarray(indices).ravel()
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= 1 << bits_per_index):
        raise ValueError(f"indices must lie in [0, {1 << bits_per_index})")
    out = np.zeros((1, -(-(idx.size * bits_per_index) // 8)), dtype=np.uint8)
    return _pack_rows(idx.astype(np.uint16)[None], bits_per_index, out).tobytes()


def unpack_indices(data: bytes, count: int, bits_per_index: int) -> np.ndarray:
    """Inverse of :func:`pack_indices`: the first ``count`` indices of ``data`` (uint16).

    >>> unpack_indices(bytes.fromhex("007ff000"), 3, 10).tolist()
    [1, 1023, 0]
    """
    _check_bits(bits_per_index)
    need = -(-(count * bits_per_index) // 8)
    if len(data) < need:
        raise PacketTruncatedError(
            f"{count} indices of {bits_per_index} bits need {need} bytes, got {len(data)}"
        )
    # The 4-byte read window may run up to 3 bytes past the last index: pad with zeros.
    return _unpack(bytes(data[:need]) + bytes(3), 0, count, bits_per_index).copy()


# --------------------------------------------------------------------------------------------
# Packets
# --------------------------------------------------------------------------------------------


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
    """A packet of RVQ indices. ``indices`` belong at flat positions :attr:`positions` of
    stage :attr:`stage` in the ``[stages, h, w]`` index array."""

    order: str  # "stage-major" or "position-major"
    interleave: bool
    model_id: int
    num_stages: int
    bits_per_index: int
    image_size: tuple[int, int]  # (height_px, width_px)
    downsample_log2: int
    latent_shape: tuple[int, int]  # (h, w) = ceil(image_size / 2**downsample_log2)
    stage: int
    first_position: int  # offset into position_order(latent_shape, interleave=...)
    num_indices: int
    indices: np.ndarray  # uint16 [num_indices], read-only

    @property
    def positions(self) -> np.ndarray:
        """Flat latent positions (``y * w + x``) of :attr:`indices`."""
        order = _position_order(self.latent_shape[0], self.latent_shape[1], self.interleave)
        return order[self.first_position : self.first_position + self.num_indices]

    def to_bytes(self) -> bytes:
        """Encode the fields again; equals :attr:`raw` for every packet the parser accepts."""
        return _encode_index_packet(
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
        return _encode_bytes_packet(
            self.size_bytes,
            self.message_id,
            self.seq,
            self.file_size_bytes,
            _CONTENT_TYPE_CODES[self.content_type],
            self.data,
        )


def _byte0(kind: int, order_bit: int = 0, interleave_bit: int = 0) -> int:
    return (FORMAT_VERSION << 4) | (kind << 2) | (order_bit << 1) | interleave_bit


def _seal(body: bytes) -> bytes:
    return body + _crc32c(body).to_bytes(CRC_SIZE_BYTES, "big")


def _encode_index_packet(
    size_bytes: int,
    message_id: int,
    seq: int,
    order: str,
    interleave: bool,
    model_id: int,
    num_stages: int,
    bits_per_index: int,
    image_size: tuple[int, int],
    stage: int,
    downsample_log2: int,
    indices: np.ndarray,
) -> bytes:
    header = _INDEX_HEADER.pack(
        _byte0(PayloadKind.INDICES, ORDERS.index(order), int(interleave)),
        message_id,
        seq,
        model_id,
        ((num_stages - 1) << 4) | (bits_per_index - 1),
        image_size[0],
        image_size[1],
        (stage << 4) | downsample_log2,
    )
    payload = np.zeros((1, size_bytes - INDEX_HEADER_SIZE_BYTES - CRC_SIZE_BYTES), np.uint8)
    row = np.asarray(indices, dtype=np.uint16)[None]
    return _seal(header + _pack_rows(row, bits_per_index, payload).tobytes())


def _encode_bytes_packet(
    size_bytes: int, message_id: int, seq: int, file_size_bytes: int, content_code: int, data: bytes
) -> bytes:
    header = _BYTES_HEADER.pack(
        _byte0(PayloadKind.BYTES), message_id, seq, file_size_bytes, content_code
    )
    pad = size_bytes - BYTES_HEADER_SIZE_BYTES - CRC_SIZE_BYTES - len(data)
    return _seal(header + bytes(data) + bytes(pad))


def _latent_shape(image_size: tuple[int, int], downsample_log2: int) -> tuple[int, int]:
    f = 1 << downsample_log2
    return -(-image_size[0] // f), -(-image_size[1] // f)


def _downsample_log2(image_size: tuple[int, int], latent_shape: tuple[int, int]) -> int:
    for k in range(MAX_DOWNSAMPLE_LOG2 + 1):
        if _latent_shape(image_size, k) == latent_shape:
            return k
    raise ValueError(
        f"latent shape {latent_shape} is not ceil(image_size / 2**k) of image_size {image_size} "
        f"for any k in 0..{MAX_DOWNSAMPLE_LOG2}; the packet format derives the latent geometry "
        "that way (as codec.Codec.latent_shape does)"
    )


def _check_uint16(name: str, value: int) -> None:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{name} = {value} must fit 16 bits (0..65535)")


def packetize(
    code: ProgressiveCode,
    packet_size_bytes: int = DEFAULT_PACKET_SIZE_BYTES,
    *,
    message_id: int = 0,
    order: Order = "stage-major",
    interleave: bool = False,
) -> list[bytes]:
    """Split a code's indices into fixed-size packets, in sending order (``seq`` order).

    ``order="stage-major"`` (default) sends all of stage 1, then stage 2, and so on, so any
    prefix of the packet list gives complete leading stages. ``"position-major"`` sends every
    stage of the first slice of positions, then of the next slice: full quality over a
    growing part of the image. Packets never mix stages in either order. ``interleave=True``
    fills each packet with positions spread over the whole image (:func:`position_order`).

    >>> import numpy as np
    >>> from codec.code import ProgressiveCode
    >>> code = ProgressiveCode(np.zeros((5, 32, 48), np.uint16), (512, 768), 10, 1)
    >>> packets = packetize(code, message_id=42, interleave=True)
    >>> len(packets), len(packets[0])
    (30, 360)
    >>> parse_packet(packets[7]).stage, parse_packet(packets[7]).first_position
    (1, 274)
    """
    _check_packet_size(packet_size_bytes)
    if order not in ORDERS:
        raise ValueError(f"order = {order!r} is not one of {ORDERS}")
    indices = np.asarray(code.indices)
    if indices.ndim != 3:
        raise ValueError(f"indices must be [stages, h, w], got shape {indices.shape}")
    num_stages, h, w = (int(v) for v in indices.shape)
    b = int(code.bits_per_index)
    _check_bits(b)
    if not 1 <= num_stages <= MAX_STAGES:
        raise ValueError(f"the format carries 1..{MAX_STAGES} stages, the code has {num_stages}")
    if not 1 <= h * w <= MAX_POSITIONS_PER_STAGE:
        raise ValueError(
            f"latent {h}x{w} = {h * w} positions is outside 1..{MAX_POSITIONS_PER_STAGE}"
        )
    if indices.size and int(indices.max()) >= 1 << b:
        raise ValueError(f"index {int(indices.max())} does not fit {b} bits")
    image_size = (int(code.image_size[0]), int(code.image_size[1]))
    for name, value in (
        ("message_id", message_id),
        ("model_id", code.model_id),
        ("image height_px", image_size[0]),
        ("image width_px", image_size[1]),
    ):
        _check_uint16(name, int(value))
    if min(image_size) < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    k = _downsample_log2(image_size, (h, w))
    model_id = int(code.model_id)

    cap = index_capacity(packet_size_bytes, b)
    positions = h * w
    pps = -(-positions // cap)
    total = num_stages * pps
    if total > MAX_PACKETS_PER_MESSAGE:
        raise ValueError(
            f"the code needs {total} packets of {packet_size_bytes} bytes; one message holds at "
            f"most {MAX_PACKETS_PER_MESSAGE} (16-bit seq): use larger packets"
        )
    # One vectorised pass builds every packet body (header + payload) in seq order; only the
    # CRC is computed per packet.
    flat = indices.reshape(num_stages, positions)
    if interleave:
        flat = np.take(flat, _position_order(h, w, True), axis=1)
    rows = np.zeros((num_stages, pps * cap), dtype=np.uint16)
    rows[:, :positions] = flat  # zero indices past the end pack to zero padding bits
    rows = rows.reshape(num_stages, pps, cap)
    seqs = np.arange(total)
    if order == "position-major":
        chunks, stages = np.divmod(seqs, num_stages)
    else:
        stages, chunks = np.divmod(seqs, pps)
    body_size = packet_size_bytes - CRC_SIZE_BYTES
    bodies = np.zeros((total, body_size), dtype=np.uint8)
    headers = np.zeros(total, dtype=_INDEX_HEADER_DTYPE)
    headers["byte0"] = _byte0(PayloadKind.INDICES, ORDERS.index(order), int(interleave))
    headers["message_id"] = message_id
    headers["seq"] = seqs
    headers["model_id"] = model_id
    headers["stages_bits"] = ((num_stages - 1) << 4) | (b - 1)
    headers["height_px"], headers["width_px"] = image_size
    headers["stage_ds"] = (stages << 4) | k
    bodies[:, :INDEX_HEADER_SIZE_BYTES] = headers.view(np.uint8).reshape(total, -1)
    _pack_rows(rows[stages, chunks], b, bodies[:, INDEX_HEADER_SIZE_BYTES:])
    bodies = bodies.tobytes()
    crc = _crc32c
    packets = []
    for start in range(0, total * body_size, body_size):
        body = bodies[start : start + body_size]
        packets.append(body + crc(body).to_bytes(CRC_SIZE_BYTES, "big"))
    return packets


def packetize_bytes(
    data: bytes,
    packet_size_bytes: int = DEFAULT_PACKET_SIZE_BYTES,
    *,
    message_id: int = 0,
    content_type: str = "application/octet-stream",
) -> list[bytes]:
    """Split an opaque file (AVIF, JPEG, ...) into fixed-size packets with the same CRC.

    >>> packets = packetize_bytes(b"x" * 1000, 360, message_id=3, content_type="image/avif")
    >>> len(packets), reassemble_bytes(packets[::-1]).data == b"x" * 1000
    (3, True)
    """
    _check_packet_size(packet_size_bytes)
    _check_uint16("message_id", message_id)
    if content_type not in _CONTENT_TYPE_CODES:
        raise ValueError(
            f"content_type {content_type!r} is not one of {sorted(_CONTENT_TYPE_CODES)}"
        )
    data = bytes(data)
    if len(data) > 0xFFFFFFFF:
        raise ValueError(f"file of {len(data)} bytes does not fit the 32-bit size field")
    cap = byte_capacity(packet_size_bytes)
    total = max(1, -(-len(data) // cap))
    if total > MAX_PACKETS_PER_MESSAGE:
        raise ValueError(
            f"{len(data)} bytes need {total} packets of {packet_size_bytes} bytes; one message "
            f"holds at most {MAX_PACKETS_PER_MESSAGE}: use larger packets"
        )
    code = _CONTENT_TYPE_CODES[content_type]
    return [
        _encode_bytes_packet(
            packet_size_bytes, message_id, seq, len(data), code, data[seq * cap : (seq + 1) * cap]
        )
        for seq in range(total)
    ]


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


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
    pps = -(-positions // cap)
    total = num_stages * pps
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
            pps, total)  # fmt: skip


def _index_fields(data: bytes, n: int) -> tuple:
    """Check an index packet's header and padding (CRC already checked); return the
    :class:`IndexPacket` arguments up to, not including, ``indices``."""
    sk = data[12]
    k = sk & 15
    order, interleave, model_id, num_stages, b, image_size, latent, positions, cap, pps, total = (
        _index_geometry(n, data[0], data[5:12], k)
    )
    message_id, seq = _MESSAGE_SEQ.unpack_from(data, 1)
    if seq >= total:
        raise PacketFieldError(
            "seq", seq, f"0..{total - 1}", 3, f"the message has {total} packets of {n} bytes"
        )
    if data[0] & 2:  # position-major
        chunk, stage = divmod(seq, num_stages)
    else:
        stage, chunk = divmod(seq, pps)
    if sk >> 4 != stage:
        raise PacketFieldError(
            "stage", sk >> 4, str(stage), 12, f"seq {seq} belongs to stage {stage}"
        )
    first = chunk * cap
    count = min(cap, positions - first)
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
    byte0, message_id, seq, file_size, ctype = _BYTES_HEADER.unpack_from(data)
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
    computed = _crc32c(data[:body_end])
    if stored != computed:
        raise PacketCRCError(
            f"CRC-32C mismatch: trailer at byte offset {body_end} holds 0x{stored:08x}, bytes "
            f"0..{body_end - 1} give 0x{computed:08x}; the packet was corrupted"
        )
    version = data[0] >> 4
    if version != FORMAT_VERSION:
        hint = " (0xF marks a fragment: rejoin it with Defragmenter)" if version == 0xF else ""
        raise PacketVersionError(
            f"format version {version} (byte 0, bits 7-4) is unknown; "
            f"this parser reads version {FORMAT_VERSION}{hint}"
        )
    return (data[0] >> 2) & 3


def parse_packet(
    data: bytes | bytearray | memoryview, packet_size_bytes: int | None = None
) -> IndexPacket | BytesPacket:
    """Check and decode one packet; raise a :class:`PacketError` subclass naming the fault.

    Checks run in this order, and no field is read before the CRC has passed: length
    (:class:`PacketTruncatedError`, :class:`PacketLengthError`), CRC (:class:`PacketCRCError`),
    version (:class:`PacketVersionError`), fields (:class:`PacketFieldError`).

    >>> packet = packetize_bytes(b"hello", 20)[0]
    >>> parse_packet(packet).data
    b'hello'
    >>> parse_packet(packet[:-1], packet_size_bytes=20)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    satlink.packets.PacketTruncatedError: packet is 19 bytes, ...
    """
    if type(data) is not bytes:
        data = bytes(data)  # an immutable copy: the bytes checked are the bytes kept
    kind = _check_frame(data, packet_size_bytes)
    n = len(data)
    if kind == 0:
        fields = _index_fields(data, n)
        return IndexPacket(
            *fields, _unpack(data, INDEX_HEADER_SIZE_BYTES, fields[_F_COUNT], fields[_F_BITS])
        )
    if kind == 1:
        return _parse_bytes(data, n)
    raise PacketFieldError("payload_kind", kind, "0 (indices) or 1 (bytes)", 0, "byte 0 bits 3-2")


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
                raise PacketFieldError(
                    "payload_kind", kind, "0 (indices) or 1 (bytes)", 0, "byte 0 bits 3-2"
                )
        except PacketError as exc:
            if errors == "raise":
                raise
            out.append(exc)
    for (n, bits), items in pending.items():
        # All packets of one size and bits per index: unpack at full capacity in one pass;
        # each packet keeps a read-only view of its first `count` indices.
        capacity = (n - INDEX_HEADER_SIZE_BYTES - CRC_SIZE_BYTES) * 8 // bits
        gather, shifts, mask = _unpack_plan(capacity, bits, INDEX_HEADER_SIZE_BYTES)
        raw = np.frombuffer(b"".join(f[_F_RAW] for _, f in items), dtype=np.uint8)
        words = np.take(raw.reshape(len(items), n), gather, axis=1).view(">u4")[..., 0]
        values = ((words >> shifts) & mask).astype(np.uint16)
        values.flags.writeable = False
        for row, (i, fields) in enumerate(items):
            out[i] = IndexPacket(*fields, values[row, : fields[_F_COUNT]])
    return out  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Reassembly
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class IndexMessage:
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
    def missing_seqs(self) -> list[int]:
        """Sequence numbers of the packets that have not arrived."""
        have = set(self.received_seqs)
        return [s for s in range(self.total_packets) if s not in have]

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
class BytesMessage:
    """What arrived of one file message; ``data`` is ``None`` until every packet is in."""

    message_id: int
    data: bytes | None
    file_size_bytes: int
    content_type: str
    packet_size_bytes: int
    total_packets: int
    received_seqs: tuple[int, ...]

    @property
    def missing_seqs(self) -> list[int]:
        have = set(self.received_seqs)
        return [s for s in range(self.total_packets) if s not in have]

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
            _check_packet_size(packet_size_bytes)
        self.packet_size_bytes = packet_size_bytes
        self._first: dict[int, Packet] = {}
        self._packets: dict[int, dict[int, Packet]] = {}
        # Per indices message: [stages, h*w] indices and received mask, filled as packets
        # arrive, so that a preview after every packet costs a copy, not a rebuild.
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.duplicates = 0

    def add(self, packet: bytes | bytearray | memoryview | Packet) -> bool:
        """Accept one packet; ``True`` if new, ``False`` for an exact duplicate.

        Raises :class:`PacketError` subclasses for malformed or inconsistent packets.
        """
        p = packet if isinstance(packet, Packet) else parse_packet(packet, self.packet_size_bytes)
        if self.packet_size_bytes is None:
            self.packet_size_bytes = p.size_bytes
        elif p.size_bytes != self.packet_size_bytes:
            cls = (
                PacketTruncatedError if p.size_bytes < self.packet_size_bytes else PacketLengthError
            )
            raise cls(f"packet is {p.size_bytes} bytes, expected {self.packet_size_bytes}")
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
        positions = p.positions
        indices[p.stage, positions] = p.indices
        received[p.stage, positions] = True

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

    >>> packets = packetize_bytes(bytes(1000), 360)
    >>> reassemble_bytes(packets[:2]).missing_seqs
    [2]
    """
    r = Reassembler(packet_size_bytes)
    for p in parse_packets(packets, packet_size_bytes):
        r.add(p)
    return r.bytes_message()


# --------------------------------------------------------------------------------------------
# Fragmentation
# --------------------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Fragment:
    """One piece of a logical packet, keyed by the packet's ``(message_id, seq)``."""

    message_id: int
    seq: int
    index: int
    count: int
    payload: bytes


def fragment_count(packet_size_bytes: int, mtu_bytes: int) -> int:
    """Fragments a packet of ``packet_size_bytes`` needs under a message cap of ``mtu_bytes``.

    >>> fragment_count(360, 70)     # BeiDou-3 global short message
    6
    """
    if mtu_bytes < MIN_MTU_BYTES:
        raise ValueError(
            f"mtu_bytes = {mtu_bytes} is below {MIN_MTU_BYTES} (a "
            f"{FRAGMENT_HEADER_SIZE_BYTES}-byte header, a {FRAGMENT_CRC_SIZE_BYTES}"
            "-byte CRC and at least 1 payload byte)"
        )
    per = mtu_bytes - FRAGMENT_HEADER_SIZE_BYTES - FRAGMENT_CRC_SIZE_BYTES
    count = -(-packet_size_bytes // per)
    if count > MAX_FRAGMENTS:
        raise ValueError(
            f"a {packet_size_bytes}-byte packet needs {count} fragments of "
            f"{mtu_bytes} bytes; at most {MAX_FRAGMENTS} are numbered"
        )
    return count


def fragment(packet: bytes, mtu_bytes: int) -> list[bytes]:
    """Split a packet into fragments of at most ``mtu_bytes`` (all full but the last).

    Each fragment: 7-byte header (marker, message id, seq, index, count), a slice of the
    packet, CRC-16/CCITT-FALSE. Rejoin with :class:`Defragmenter`.

    >>> packet = packetize_bytes(bytes(500), 360)[0]
    >>> [len(f) for f in fragment(packet, 70)]
    [70, 70, 70, 70, 70, 64]
    """
    p = parse_packet(packet)  # only valid packets are split: the key comes from their header
    count = fragment_count(p.size_bytes, mtu_bytes)
    per = mtu_bytes - FRAGMENT_HEADER_SIZE_BYTES - FRAGMENT_CRC_SIZE_BYTES
    out = []
    for i in range(count):
        body = _FRAGMENT_HEADER.pack(FRAGMENT_MARKER, p.message_id, p.seq, i, count)
        body += p.raw[i * per : (i + 1) * per]
        out.append(body + _crc16(body).to_bytes(FRAGMENT_CRC_SIZE_BYTES, "big"))
    return out


def parse_fragment(data: bytes | bytearray | memoryview) -> Fragment:
    """Check and decode one fragment; raise a :class:`PacketError` subclass naming the fault.

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
    computed = _crc16(data[:-FRAGMENT_CRC_SIZE_BYTES])
    if stored != computed:
        raise PacketCRCError(
            f"fragment CRC-16 mismatch: trailer at byte offset {n - FRAGMENT_CRC_SIZE_BYTES} "
            f"holds 0x{stored:04x}, bytes 0..{n - 3} give 0x{computed:04x}"
        )
    marker, message_id, seq, index, count = _FRAGMENT_HEADER.unpack_from(data)
    if marker != FRAGMENT_MARKER:
        raise PacketVersionError(
            f"byte 0 is 0x{marker:02x}; fragments start with "
            f"0x{FRAGMENT_MARKER:02x} (is this an unfragmented packet?)"
        )
    if count == 0:
        raise PacketFieldError("fragment_count", 0, f"1..{MAX_FRAGMENTS}", 6)
    if index >= count:
        raise PacketFieldError("fragment_index", index, f"0..{count - 1}", 5)
    return Fragment(message_id, seq, index, count, data[FRAGMENT_HEADER_SIZE_BYTES:-2])


class Defragmenter:
    """Rejoins fragments into logical packets; a packet with a fragment missing never comes out.

    ``add`` returns the rejoined packet bytes when its last fragment arrives (check them with
    :func:`parse_packet`, whose CRC-32C covers the whole packet), else ``None``. At most
    ``max_pending`` incomplete packets are kept; beyond that the oldest is dropped.

    >>> frags = fragment(packetize_bytes(bytes(100), 60)[0], 20)
    >>> d = Defragmenter()
    >>> [d.add(f) is not None for f in frags[::-1]]
    [False, False, False, False, False, True]
    """

    def __init__(self, max_pending: int = 4096) -> None:
        self.max_pending = max_pending
        self._pending: dict[tuple[int, int], dict[int, Fragment]] = {}
        self._done: set[tuple[int, int]] = set()
        self.duplicates = 0
        self.evicted = 0

    def add(self, data: bytes | bytearray | memoryview) -> bytes | None:
        """Accept one fragment; return the whole packet once all its fragments are in."""
        f = parse_fragment(data)
        key = (f.message_id, f.seq)
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
        return b"".join(parts[i].payload for i in range(f.count))

    def missing(self) -> dict[tuple[int, int], list[int]]:
        """``{(message_id, seq): [missing fragment indices]}`` of packets still incomplete."""
        out = {}
        for key, parts in self._pending.items():
            count = next(iter(parts.values())).count
            out[key] = [i for i in range(count) if i not in parts]
        return out
