"""Sending side: split a ``ProgressiveCode`` (or an opaque file) into fixed-size packets.

Packets go out in sequence-number order, each carrying the next slots of the message's index
stream (:mod:`satlink.packets.stream`). Within a stage, indices follow
:func:`~satlink.packets.stream.position_order` (raster, or an ordered-dither interleave that
scatters a lost packet's holes over the image); across stages, ``order`` chooses stage-major
(every prefix gives complete leading stages) or position-major (full quality over a growing part
of the image). Every header field is derived from the code, so any packet can be placed without
the others.

>>> import numpy as np
>>> from codec.code import ProgressiveCode
>>> from satlink.packets.packetize import packetize
>>> code = ProgressiveCode(np.zeros((2, 4, 4), np.uint16), (64, 64), 10, 1)
>>> [len(p) for p in packetize(code, 30)]
[30, 30, 30, 30]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from satlink.packets import crc
from satlink.packets.bitpack import pack_rows
from satlink.packets.format import (
    BYTES_HEADER,
    BYTES_HEADER_SIZE_BYTES,
    CONTENT_TYPE_CODES,
    CRC_SIZE_BYTES,
    DEFAULT_PACKET_SIZE_BYTES,
    INDEX_HEADER,
    INDEX_HEADER_DTYPE,
    INDEX_HEADER_SIZE_BYTES,
    MAX_PACKETS_PER_MESSAGE,
    MAX_POSITIONS_PER_STAGE,
    MAX_STAGES,
    ORDERS,
    Order,
    PayloadKind,
    byte0,
    check_bits,
    check_packet_size,
    check_uint16,
    downsample_log2_for,
)
from satlink.packets.sizing import byte_capacity, index_capacity
from satlink.packets.stream import packet_count, slot_offsets, slot_stages_ranks

if TYPE_CHECKING:
    # Only the type: importing codec at run time pulls in torch (seconds), which transport-only
    # users (channel simulation, decoding file messages) do not need.
    from codec.code import ProgressiveCode

__all__ = [
    "encode_bytes_packet",
    "encode_index_packet",
    "packetize",
    "packetize_bytes",
]


def encode_index_packet(
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
    """One index packet from its fields (no range checks: :class:`IndexPacket.to_bytes`
    re-encodes fields the parser has already checked)."""
    header = INDEX_HEADER.pack(
        byte0(PayloadKind.INDICES, ORDERS.index(order), int(interleave)),
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
    return crc.seal(header + pack_rows(row, bits_per_index, payload).tobytes())


def encode_bytes_packet(
    size_bytes: int, message_id: int, seq: int, file_size_bytes: int, content_code: int, data: bytes
) -> bytes:
    """One bytes packet holding ``data`` (zero-padded to ``size_bytes``); no range checks."""
    header = BYTES_HEADER.pack(
        byte0(PayloadKind.BYTES), message_id, seq, file_size_bytes, content_code
    )
    pad = size_bytes - BYTES_HEADER_SIZE_BYTES - CRC_SIZE_BYTES - len(data)
    return crc.seal(header + bytes(data) + bytes(pad))


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
    growing part of the image. Either way the indices form one stream without gaps
    (:mod:`satlink.packets.stream`): a packet may end one stage and begin the next, and only
    the message's last packet is partly empty. ``interleave=True`` fills each packet with
    positions spread over the whole image (:func:`~satlink.packets.stream.position_order`).

    >>> import numpy as np
    >>> from codec.code import ProgressiveCode
    >>> from satlink.packets import parse_packet
    >>> code = ProgressiveCode(np.zeros((5, 32, 48), np.uint16), (512, 768), 10, 1)
    >>> packets = packetize(code, message_id=42, interleave=True)
    >>> len(packets), len(packets[0])
    (29, 360)
    >>> p = parse_packet(packets[5])                  # the rest of stage 1, then stage 2
    >>> p.stage, p.first_slot, p.num_indices, sorted(set(p.stages.tolist()))
    (0, 1370, 274, [0, 1])
    """
    check_packet_size(packet_size_bytes)
    if order not in ORDERS:
        raise ValueError(f"order = {order!r} is not one of {ORDERS}")
    indices = np.asarray(code.indices)
    if indices.ndim != 3:
        raise ValueError(f"indices must be [stages, h, w], got shape {indices.shape}")
    num_stages, h, w = (int(v) for v in indices.shape)
    b = int(code.bits_per_index)
    check_bits(b)
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
        check_uint16(name, int(value))
    if min(image_size) < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    k = downsample_log2_for(image_size, (h, w))
    model_id = int(code.model_id)

    cap = index_capacity(packet_size_bytes, b)
    positions = h * w
    total = packet_count(num_stages, positions, cap)
    if total > MAX_PACKETS_PER_MESSAGE:
        raise ValueError(
            f"the code needs {total} packets of {packet_size_bytes} bytes; one message holds at "
            f"most {MAX_PACKETS_PER_MESSAGE} (16-bit seq): use larger packets"
        )
    # One vectorised pass builds every packet body (header + payload) in seq order; only the
    # CRC is computed per packet.
    rows = np.zeros(total * cap, dtype=np.uint16)
    # zeros past the end pack to zero padding bits
    rows[: num_stages * positions] = indices.reshape(-1)[
        slot_offsets(order, num_stages, h, w, interleave, cap)
    ]
    rows = rows.reshape(total, cap)
    seqs = np.arange(total)
    first_stage, _ = slot_stages_ranks(order, num_stages, positions, cap, seqs * cap)
    body_size = packet_size_bytes - CRC_SIZE_BYTES
    bodies = np.zeros((total, body_size), dtype=np.uint8)
    headers = np.zeros(total, dtype=INDEX_HEADER_DTYPE)
    headers["byte0"] = byte0(PayloadKind.INDICES, ORDERS.index(order), int(interleave))
    headers["message_id"] = message_id
    headers["seq"] = seqs
    headers["model_id"] = model_id
    headers["stages_bits"] = ((num_stages - 1) << 4) | (b - 1)
    headers["height_px"], headers["width_px"] = image_size
    headers["stage_ds"] = (first_stage << 4) | k
    bodies[:, :INDEX_HEADER_SIZE_BYTES] = headers.view(np.uint8).reshape(total, -1)
    pack_rows(rows, b, bodies[:, INDEX_HEADER_SIZE_BYTES:])
    bodies = bodies.tobytes()
    crc32c = crc.crc32c_function  # bound once: the loop below runs once per packet
    packets = []
    for start in range(0, total * body_size, body_size):
        body = bodies[start : start + body_size]
        packets.append(body + crc32c(body).to_bytes(CRC_SIZE_BYTES, "big"))
    return packets


def packetize_bytes(
    data: bytes,
    packet_size_bytes: int = DEFAULT_PACKET_SIZE_BYTES,
    *,
    message_id: int = 0,
    content_type: str = "application/octet-stream",
) -> list[bytes]:
    """Split an opaque file (AVIF, JPEG, ...) into fixed-size packets with the same CRC.

    >>> from satlink.packets import reassemble_bytes
    >>> packets = packetize_bytes(b"x" * 1000, 360, message_id=3, content_type="image/avif")
    >>> len(packets), reassemble_bytes(packets[::-1]).data == b"x" * 1000
    (3, True)
    """
    check_packet_size(packet_size_bytes)
    check_uint16("message_id", message_id)
    if content_type not in CONTENT_TYPE_CODES:
        raise ValueError(
            f"content_type {content_type!r} is not one of {sorted(CONTENT_TYPE_CODES)}"
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
    code = CONTENT_TYPE_CODES[content_type]
    return [
        encode_bytes_packet(
            packet_size_bytes, message_id, seq, len(data), code, data[seq * cap : (seq + 1) * cap]
        )
        for seq in range(total)
    ]
