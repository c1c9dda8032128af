"""The errors of the packet layer: one class per kind of fault, each naming what is at fault.

Every malformed packet or fragment raises a :class:`PacketError` (a ``ValueError``) subclass;
field errors carry the field, the value, what is allowed and the byte offset, so a receiver can
log exactly why it dropped a packet.

>>> from satlink.packets.errors import PacketFieldError
>>> str(PacketFieldError("seq", 9, "0..5", 3))
'header field seq = 9 at byte offset 3 is out of range (allowed: 0..5)'
"""

from __future__ import annotations

__all__ = [
    "PacketCRCError",
    "PacketConsistencyError",
    "PacketError",
    "PacketFieldError",
    "PacketLengthError",
    "PacketTruncatedError",
    "PacketVersionError",
]


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
