"""The ``[packets]`` table of a scenario: packet size, the service's message cap (fragmenting),
the sending order and interleaving, validated on construction.

Errors are :class:`satlink.config.ScenarioError` naming the key (``packets.size_bytes``) and what
is allowed; the limits come from the packet format itself, so a scenario can never ask for a
packet the format cannot carry.

>>> from satlink.packets.config import PacketsConfig
>>> PacketsConfig(size_bytes=360, fragment_bytes=70).wire_bytes
70
>>> PacketsConfig(order="random")                    # doctest: +ELLIPSIS
Traceback (most recent call last):
...
satlink.config.ScenarioError: packets.order = 'random': allowed values are 'stage-major', ...
"""

from __future__ import annotations

from dataclasses import dataclass

from satlink.config import ScenarioError, check_choice, check_int
from satlink.packets.format import (
    DEFAULT_PACKET_SIZE_BYTES,
    MAX_PACKET_SIZE_BYTES,
    MIN_MTU_BYTES,
    MIN_PACKET_SIZE_BYTES,
    ORDERS,
)
from satlink.packets.sizing import fragment_count

__all__ = ["PacketsConfig"]


@dataclass(frozen=True)
class PacketsConfig:
    """The ``[packets]`` table. ``fragment_bytes`` is the service's message cap: when set, the
    replay splits each packet into messages of at most that size (satlink.packets.fragment),
    and the channel's rate cap applies per message on the wire."""

    size_bytes: int = DEFAULT_PACKET_SIZE_BYTES
    fragment_bytes: int | None = None
    order: str = "stage-major"
    interleave: bool = False

    def __post_init__(self) -> None:
        e = ScenarioError
        check_int(
            "packets.size_bytes",
            self.size_bytes,
            lo=MIN_PACKET_SIZE_BYTES,
            hi=MAX_PACKET_SIZE_BYTES,
            error=e,
        )
        if self.fragment_bytes is not None:
            check_int(
                "packets.fragment_bytes",
                self.fragment_bytes,
                lo=MIN_MTU_BYTES,
                hi=self.size_bytes,
                error=e,
            )
            try:  # the fragment count is a numbered 8-bit field of the fragment header
                fragment_count(self.size_bytes, self.fragment_bytes)
            except ValueError as exc:
                raise e(f"packets.fragment_bytes = {self.fragment_bytes}: {exc}") from None
        check_choice("packets.order", self.order, ORDERS, error=e)
        if not isinstance(self.interleave, bool):
            raise e(f"packets.interleave = {self.interleave!r}: expected true or false")

    @property
    def wire_bytes(self) -> int:
        """Largest message on the wire: a fragment if fragmenting, else a whole packet."""
        return self.fragment_bytes if self.fragment_bytes is not None else self.size_bytes
