"""The ``[packets]`` and ``[fec]`` tables of a scenario: packet size, the service's message cap
(fragmenting), the sending order and interleaving; erasure coding and where repairs go.

Errors are :class:`satlink.config.ScenarioError` naming the key (``packets.size_bytes``) and what
is allowed; the limits come from the packet format itself, so a scenario can never ask for a
packet the format cannot carry.

>>> from satlink.packets.config import PacketsConfig
>>> PacketsConfig(size_bytes=360, fragment_bytes=70).wire_bytes
70
>>> FecConfig("reed-solomon", (1.0, 0.1)).file_ratio()
1.0
>>> PacketsConfig(order="random")                    # doctest: +ELLIPSIS
Traceback (most recent call last):
...
satlink.config.ScenarioError: packets.order = 'random': allowed values are 'stage-major', ...
"""

from __future__ import annotations

from dataclasses import dataclass

from satlink.config import ScenarioError, check_choice, check_int, check_real
from satlink.packets.blocks import FEC_SCHEMES, PLACEMENTS
from satlink.packets.format import (
    DEFAULT_PACKET_SIZE_BYTES,
    MAX_PACKET_SIZE_BYTES,
    MIN_MTU_BYTES,
    MIN_PACKET_SIZE_BYTES,
    ORDERS,
)
from satlink.packets.sizing import fragment_count

__all__ = ["MAX_REPAIR_RATIO", "FecConfig", "PacketsConfig"]

MAX_REPAIR_RATIO = 16.0  # repairs per source packet; blocks also cap k + r at 255


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


@dataclass(frozen=True)
class FecConfig:
    """The ``[fec]`` table: erasure coding across packets (and across fragments).

    ``scheme`` is ``none`` (default: the packets of today, nothing added) or ``reed-solomon``.
    ``repair_ratio_per_stage[s]`` is repair packets per source packet of RVQ stage ``s + 1``
    (``ceil(ratio * k)`` per block of ``k``); a file message (AVIF, ...) uses
    ``file_repair_ratio``, or the first stage's ratio when that is not given. ``placement``:
    ``after-block`` (each block's repairs right after its last source), ``end`` or ``spread``
    (evenly between the block and the end: a burst that takes the block spares its repairs).
    ``fragment_repair_ratio`` adds repair fragments to each fragmented packet, so that a lost
    fragment no longer loses the packet (needs ``packets.fragment_bytes``; any scheme).
    """

    scheme: str = "none"
    repair_ratio_per_stage: tuple[float, ...] = ()
    placement: str = "after-block"
    file_repair_ratio: float | None = None
    fragment_repair_ratio: float = 0.0

    def __post_init__(self) -> None:
        e = ScenarioError
        check_choice("fec.scheme", self.scheme, FEC_SCHEMES, error=e)
        check_choice("fec.placement", self.placement, PLACEMENTS, error=e)
        if not isinstance(self.repair_ratio_per_stage, tuple | list):
            raise e(
                f"fec.repair_ratio_per_stage = {self.repair_ratio_per_stage!r}: expected a list"
            )
        ratios = tuple(
            check_real(f"fec.repair_ratio_per_stage[{i}]", r, lo=0.0, hi=MAX_REPAIR_RATIO, error=e)
            for i, r in enumerate(self.repair_ratio_per_stage)
        )
        object.__setattr__(self, "repair_ratio_per_stage", ratios)
        if self.scheme != "none" and not ratios:
            raise e("fec.repair_ratio_per_stage is empty: give one ratio per RVQ stage")
        if self.file_repair_ratio is not None:
            check_real(
                "fec.file_repair_ratio",
                self.file_repair_ratio,
                lo=0.0,
                hi=MAX_REPAIR_RATIO,
                error=e,
            )
        check_real(
            "fec.fragment_repair_ratio",
            self.fragment_repair_ratio,
            lo=0.0,
            hi=MAX_REPAIR_RATIO,
            error=e,
        )

    @property
    def enabled(self) -> bool:
        return self.scheme != "none"

    def file_ratio(self) -> float:
        """Repair ratio of a file message."""
        if self.file_repair_ratio is not None:
            return float(self.file_repair_ratio)
        return self.repair_ratio_per_stage[0] if self.repair_ratio_per_stage else 0.0
