"""Discrete-event satellite link (SimPy): it moves bytes and knows nothing of images.

One sender process takes messages from a bounded queue and puts them on the wire, honouring the
service's rate, its minimum interval between messages and the visibility windows. Propagation
delay, jitter, loss, bit errors and ARQ are decided per transmission from seeded numpy streams,
so the same seed gives the same trace byte for byte.

>>> from satlink.channel import Link, LinkConfig, LossConfig
>>> cfg = LinkConfig(rate_bps=2400.0, min_interval_s=60.0, loss=LossConfig("bernoulli", p=0.1))
>>> deliveries, trace = Link(cfg, seed=1).run([bytes(360)] * 5)
>>> [(seq, round(t, 1)) for t, seq, data in deliveries]
[(0, 1.2), (1, 61.2), (2, 121.2), (3, 181.2)]
>>> trace.counts()["lost"]
1

Stream deliveries in arrival order while the simulation runs (a receiver can render a preview
after each one):

>>> for t_arrival_s, seq, payload in Link(cfg, seed=1).stream([b"abc"] * 2):
...     print(seq, round(t_arrival_s, 3))
0 0.01
1 60.01

Model notes (also in docs/CHANNEL.md):

* Serialization takes exactly ``8 * len(payload) / rate_bps`` seconds.
* ``min_interval_s`` is measured between the starts of consecutive messages on the wire,
  retransmissions included (a BeiDou card or Iridium modem counts every message it sends).
* A message must start and finish inside one visibility window. Outside a window the message at
  the head of the queue waits for the next window, or is dropped (``visibility.outside``).
* Loss and bit errors are drawn once per transmission; a Gilbert-Elliott or shadowing chain
  advances per transmission, or in time with ``loss.step_s`` (waiting out a burst helps).
* Budget loss models take each message's Eb/N0 from the link budget at its own elevation and
  slant range (a circular pass, or the SGP4 track of an orbit); the trace keeps ``ebn0_db`` and
  the ``per`` applied.
* Jitter is uniform in ``[0, jitter_s)`` and added to the propagation delay, so arrivals may be
  reordered; a receiver must cope (satlink's reassembler does).
* The ARQ's return link is ideal by default (the sender learns of a loss one round trip after
  the attempt, as when the receiver NAKs the gap it sees), or carries ACK/NAK entries as
  messages with their own rate, interval, delay and loss (``return_link.mode = "messages"``),
  with an optional window. Repeats go before new messages; a message out of retries is
  ``abandoned``.
* When the sender frees up it commits to the next message (a repeat that is due, else the head
  of the queue); that message then waits for its interval slot or window, and a NAK arriving
  meanwhile is served after it.
* Deliveries include every copy that reached the receiver: duplicates, and copies with flipped
  bits, which the receiver's CRC rejects.

Modules, one concern each (this package re-exports their public names):

* :mod:`satlink.channel.config`: the frozen configuration dataclasses and their checks;
* :mod:`satlink.channel.loss`: erasure models (Bernoulli, Gilbert-Elliott) and bit errors;
* :mod:`satlink.channel.visibility`: visibility windows and scheduling within a pass;
* :mod:`satlink.channel.arq`: the ARQ's return link as messages;
* :mod:`satlink.channel.trace`: deliveries, the per-event trace and its CSV;
* :mod:`satlink.channel.link`: the SimPy sender process, :class:`Link` and :class:`LinkRun`.
"""

from satlink.channel.config import (
    ARQ_MODES,
    DELAY_MODES,
    ELEVATION_MODES,
    LOSS_MODELS,
    OUTSIDE_MODES,
    RETURN_MODES,
    VISIBILITY_MODES,
    ArqConfig,
    DelayConfig,
    GeometryTrack,
    LinkConfig,
    LossConfig,
    ReturnLinkConfig,
    VisibilityConfig,
    gilbert_elliott_stationary_loss,
)
from satlink.channel.link import Link, LinkRun
from satlink.channel.loss import Bernoulli, GilbertElliott
from satlink.channel.trace import CHANNEL_STATES, OUTCOMES, Delivery, LinkResult, Trace
from satlink.config import ChannelConfigError

__all__ = [
    "ARQ_MODES",
    "CHANNEL_STATES",
    "DELAY_MODES",
    "ELEVATION_MODES",
    "LOSS_MODELS",
    "OUTCOMES",
    "OUTSIDE_MODES",
    "RETURN_MODES",
    "VISIBILITY_MODES",
    "ArqConfig",
    "Bernoulli",
    "ChannelConfigError",
    "DelayConfig",
    "Delivery",
    "GeometryTrack",
    "GilbertElliott",
    "Link",
    "LinkConfig",
    "LinkResult",
    "LinkRun",
    "LossConfig",
    "ReturnLinkConfig",
    "Trace",
    "VisibilityConfig",
    "gilbert_elliott_stationary_loss",
]
