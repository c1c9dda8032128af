"""The transmit plan: the messages the sender puts on the link, in order, each tied to the
logical packet it belongs to. Without a message cap a message is a packet; with one
(``PacketsConfig.fragment_bytes``), each packet becomes its fragments, and every fragment
inherits its packet's reliability flag (for ARQ modes that repeat only some packets).

>>> from satlink.packets import PacketsConfig, packetize_bytes
>>> packets = packetize_bytes(bytes(500), 200)
>>> plan = plan_transmission(packets, PacketsConfig(size_bytes=200, fragment_bytes=70), [True] * 3)
>>> plan.packet_count, len(plan.messages), plan.packet_of_message[:5]
(3, 12, [0, 0, 0, 0, 1])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from satlink.packets.config import PacketsConfig
from satlink.packets.fragments import fragment

__all__ = ["HasPacketsConfig", "TransmitPlan", "plan_transmission"]


class HasPacketsConfig(Protocol):
    """Anything that carries a ``[packets]`` table, such as a ``satlink.scenario.Scenario``."""

    @property
    def packets(self) -> PacketsConfig: ...


@dataclass
class TransmitPlan:
    """What the sender puts on the link: wire messages, each with its logical packet."""

    messages: list[bytes]
    reliable: list[bool]
    packet_of_message: list[int]
    packet_count: int


def plan_transmission(
    packets: Sequence[bytes],
    config: PacketsConfig | HasPacketsConfig,
    reliable_packets: Sequence[bool],
) -> TransmitPlan:
    """Fragment packets to the service's message cap when the configuration says so.

    ``config`` is the ``[packets]`` table, or an object holding one as ``.packets`` (a
    scenario): the packet layer needs only the message cap, and takes no scenario type.
    """
    packets_config = config if isinstance(config, PacketsConfig) else config.packets
    mtu = packets_config.fragment_bytes
    if mtu is None:
        return TransmitPlan(
            list(packets), list(reliable_packets), list(range(len(packets))), len(packets)
        )
    messages, reliable, owner = [], [], []
    for i, (p, r) in enumerate(zip(packets, reliable_packets, strict=True)):
        for frag in fragment(p, mtu):
            messages.append(frag)
            reliable.append(r)
            owner.append(i)
    return TransmitPlan(messages, reliable, owner, len(packets))
