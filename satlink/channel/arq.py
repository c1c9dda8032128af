"""The ARQ's return path as messages: acknowledgements with their own caps, interval, delay
and loss.

The receiver learns of each attempt the ARQ covers (its copy arrived, or the time it would have
arrived passed: a lost one shows as a gap) and queues an entry, ACK or NAK. A SimPy process
sends the queued entries as return messages: at most ``entries_per_message`` per message, one
message per ``min_interval_s``, ``8 * message_bytes / rate_bps`` seconds on the wire, then the
return delay; a message is lost with probability ``loss_p`` and its entries go again in the next
one. When a message reaches the sender, each NAK schedules a repeat and each entry frees a slot
of the ARQ window.

>>> import numpy as np, simpy
>>> from satlink.channel.config import ReturnLinkConfig
>>> env = simpy.Environment()
>>> got = []
>>> rl = ReturnLink(env, ReturnLinkConfig(mode="messages", rate_bps=624.0, delay_s=0.25),
...                 np.random.default_rng(0), lambda t, entries: got.append((t, entries)))
>>> rl.report(1.0, 7, 0, False, 0.25)
>>> env.run()
>>> got, rl.events[0]["entries"]
([(2.25, [(7, 0, False)])], 1)
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import simpy

from satlink.channel.config import ReturnLinkConfig

__all__ = ["ReturnLink"]

Entry = tuple[int, int, bool]  # (seq, attempt, delivered ok)


class ReturnLink:
    """The return link's SimPy process. ``deliver(t_s, entries)`` is called when a return
    message reaches the sender; :attr:`events` records every return message."""

    def __init__(
        self,
        env: simpy.Environment,
        cfg: ReturnLinkConfig,
        rng: np.random.Generator,
        deliver: Callable[[float, list[Entry]], None],
    ) -> None:
        self.env, self.cfg, self.rng, self.deliver = env, cfg, rng, deliver
        self.pending: list[tuple[float, int, Entry, float]] = []  # heap by time known
        self.ready: list[tuple[Entry, float]] = []  # known to the receiver, not yet acknowledged
        self.events: list[dict[str, Any]] = []
        self._n = 0
        self._wake: simpy.Event | None = None
        self._last_start = -float("inf")
        env.process(self._run())

    def report(self, t_known_s: float, seq: int, attempt: int, ok: bool, delay_s: float) -> None:
        """The receiver will know of attempt ``attempt`` of ``seq`` at ``t_known_s``; ``delay_s``
        is that attempt's forward delay (the return delay when none is configured)."""
        heapq.heappush(self.pending, (t_known_s, self._n, (seq, attempt, ok), delay_s))
        self._n += 1
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def _run(self) -> Iterator[simpy.Event]:
        env, cfg = self.env, self.cfg
        tx_s = 8.0 * cfg.message_bytes / cfg.rate_bps
        while True:
            now = env.now
            while self.pending and self.pending[0][0] <= now:
                _t, _, entry, d = heapq.heappop(self.pending)
                self.ready.append((entry, d))
            if not self.ready:
                if self.pending:
                    yield env.timeout(self.pending[0][0] - now)
                else:
                    self._wake = env.event()
                    yield self._wake
                    self._wake = None
                continue
            t0 = max(now, self._last_start + cfg.min_interval_s)
            if t0 > now:
                yield env.timeout(t0 - now)
                continue  # more entries may have become known meanwhile
            self._last_start = now
            batch = self.ready[: cfg.entries_per_message]
            del self.ready[: cfg.entries_per_message]
            delay = cfg.delay_s if cfg.delay_s is not None else batch[0][1]
            lost = bool(self.rng.random() < cfg.loss_p)
            t_arr = now + tx_s + delay
            self.events.append(
                {
                    "t_tx_start_s": now,
                    "t_arrival_s": float("nan") if lost else t_arr,
                    "entries": len(batch),
                    "outcome": "lost" if lost else "delivered",
                }
            )
            if lost:
                self.ready[:0] = batch  # the receiver sends them again, first
            else:
                entries = [e for e, _ in batch]
                env.timeout(tx_s + delay).callbacks.append(
                    lambda _ev, t=t_arr, es=entries: self.deliver(t, es)
                )
            yield env.timeout(tx_s)
