"""The two CRCs of the packet format: CRC-32C on packets, CRC-16/CCITT-FALSE on fragments.

CRC-32C (Castagnoli) protects packets: Hamming distance 6 up to 5243 bits, so every 1..5-bit
error in a packet of up to 655 bytes is caught, and a random corruption slips through with
probability 2^-32. Fragments carry CRC-16/CCITT-FALSE only to drop a damaged fragment early; the
packet's CRC-32C still checks the rejoined packet end to end (reasons: PACKET_FORMAT.md). Both
come from crcmod, whose C extension makes them about 25x faster than its pure-Python fallback.

>>> from satlink.packets.crc import crc32c, seal
>>> hex(crc32c(b"123456789"))
'0xe3069283'
>>> seal(b"abc")[3:].hex() == crc32c(b"abc").to_bytes(4, "big").hex()
True
"""

from __future__ import annotations

import warnings

import crcmod.crcmod
import crcmod.predefined

from satlink.packets.format import CRC_SIZE_BYTES

__all__ = [
    "CRC_USES_C_EXTENSION",
    "crc16_ccitt_false",
    "crc16_function",
    "crc32c",
    "crc32c_function",
    "require_c_crc",
    "seal",
]

# The raw crcmod functions. The packet modules look them up here at call time
# (``crc.crc32c_function(body)``), not through a name bound at import, so that a benchmark can
# swap in crcmod's pure-Python twin for a whole round trip by assigning to one attribute.
crc32c_function = crcmod.predefined.mkCrcFun("crc-32c")
crc16_function = crcmod.predefined.mkCrcFun("crc-ccitt-false")

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
    return crc32c_function(data)


def crc16_ccitt_false(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/CCITT-FALSE (as CCSDS) of ``data``; the fragment trailer.

    >>> hex(crc16_ccitt_false(b"123456789"))
    '0x29b1'
    """
    return crc16_function(data)


def seal(body: bytes) -> bytes:
    """``body`` followed by its big-endian CRC-32C: a complete packet."""
    return body + crc32c_function(body).to_bytes(CRC_SIZE_BYTES, "big")
