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

from satlink.packets.config import FecConfig, PacketsConfig
from satlink.packets.fec import protect
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
    packet_count: int  # logical packets, repair packets included
    repair_count: int = 0  # of those, erasure-code repair packets


def plan_transmission(
    packets: Sequence[bytes],
    config: PacketsConfig | HasPacketsConfig,
    reliable_packets: Sequence[bool],
    fec: FecConfig | None = None,
) -> TransmitPlan:
    """Add erasure-code repair packets and fragment packets to the service's message cap when
    the configuration says so.

    ``config`` is the ``[packets]`` table, or an object holding one as ``.packets`` (a
    scenario, whose ``.fec`` table is used unless ``fec`` is given): the packet layer takes no
    scenario type. Repair packets are never marked reliable (ARQ repeats sources only).
    """
    packets_config = config if isinstance(config, PacketsConfig) else config.packets
    if fec is None:
        fec = getattr(config, "fec", None) or FecConfig()
    reliable_packets = list(reliable_packets)
    if len(reliable_packets) != len(packets):
        raise ValueError(f"{len(packets)} packets but {len(reliable_packets)} reliability flags")
    sent = protect(packets, fec)
    packets = sent.packets
    reliable_packets = [i >= 0 and reliable_packets[i] for i in sent.source_index]
    mtu = packets_config.fragment_bytes
    if mtu is None:
        return TransmitPlan(
            list(packets),
            reliable_packets,
            list(range(len(packets))),
            len(packets),
            sent.repair_count,
        )
    messages, reliable, owner = [], [], []
    for i, (p, r) in enumerate(zip(packets, reliable_packets, strict=True)):
        for frag in fragment(p, mtu, repair_ratio=fec.fragment_repair_ratio):
            messages.append(frag)
            reliable.append(r)
            owner.append(i)
    return TransmitPlan(messages, reliable, owner, len(packets), sent.repair_count)
