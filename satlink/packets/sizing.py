"""Sizing: how many indices or file bytes a packet holds, and how many packets and bytes a code
costs, fragment headers included.

Pure arithmetic on the format's sizes, for planning a transmission or charging a codec for the
bytes it sends; nothing here builds a packet. Functions that take a code also take a bare latent
shape ``(h, w)`` (then ``bits_per_index`` defaults to 10).

>>> from satlink.packets.sizing import bytes_for_stages, index_capacity
>>> index_capacity(360), bytes_for_stages((32, 48), 2)
(274, 4320)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from satlink.packets.format import (
    BYTES_HEADER_SIZE_BYTES,
    CRC_SIZE_BYTES,
    DEFAULT_PACKET_SIZE_BYTES,
    FRAGMENT_CRC_SIZE_BYTES,
    FRAGMENT_HEADER_SIZE_BYTES,
    INDEX_HEADER_SIZE_BYTES,
    MAX_FRAGMENTS,
    MIN_MTU_BYTES,
    check_bits,
    check_packet_size,
)
from satlink.packets.stream import packet_count

if TYPE_CHECKING:
    from codec.code import ProgressiveCode

__all__ = [
    "byte_capacity",
    "bytes_for_stages",
    "fragment_count",
    "index_capacity",
    "packets_for_stages",
    "packets_per_stage",
    "payload_efficiency",
]


def index_capacity(
    packet_size_bytes: int = DEFAULT_PACKET_SIZE_BYTES, bits_per_index: int = 10
) -> int:
    """How many indices one packet carries.

    >>> index_capacity(360), index_capacity(340), index_capacity(70)
    (274, 258, 42)
    """
    check_packet_size(packet_size_bytes)
    check_bits(bits_per_index)
    payload_bits = (packet_size_bytes - INDEX_HEADER_SIZE_BYTES - CRC_SIZE_BYTES) * 8
    return payload_bits // bits_per_index


def byte_capacity(packet_size_bytes: int = DEFAULT_PACKET_SIZE_BYTES) -> int:
    """How many file bytes one bytes-kind packet carries.

    >>> byte_capacity(360)
    346
    """
    check_packet_size(packet_size_bytes)
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
    """Packets one stage alone would fill, rounded up: ``ceil(h * w / capacity)``.

    A message packs its stages into one stream (:mod:`satlink.packets.stream`), so a packet
    may end one stage and begin the next; :func:`packets_for_stages` counts what the first
    ``k`` stages take. Takes a ``ProgressiveCode`` or a latent shape ``(h, w)`` (then
    ``bits_per_index`` defaults to 10).

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
    """Packets a stage-major message sends until its first ``stages`` stages are complete:
    ``ceil(stages * h * w / capacity)`` (the last of them may begin the next stage).

    >>> packets_for_stages((32, 48), 2)      # a 512 x 768 px image at 1/16, stages 1-2
    12
    >>> packets_for_stages((32, 48), 3), packets_for_stages((32, 48), 5)
    (17, 29)
    >>> packets_for_stages((32, 48), 2, packet_size_bytes=70)
    74
    """
    if stages < 0:
        raise ValueError(f"stages = {stages} must be >= 0")
    positions, bits = _geometry(code_or_latent_shape, bits_per_index)
    return packet_count(stages, positions, index_capacity(packet_size_bytes, bits))


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

    >>> bytes_for_stages((32, 48), 2), bytes_for_stages((32, 48), 5)
    (4320, 10440)
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
