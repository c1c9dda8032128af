"""The link itself: one SimPy sender process, and the runs that drive it.

The sender is a generator: it takes the next message (a repeat that is due, else the head of the
queue), works out when it may go on the wire (rate, service interval, visibility), decides
delay, loss and bit errors for it, and yields one timeout until its last bit has left.
Arrival times follow from the delay and need no events: about one SimPy event per message.

>>> from satlink.channel.config import ArqConfig, LinkConfig, LossConfig
>>> cfg = LinkConfig(
...     rate_bps=1000.0, loss=LossConfig("bernoulli", p=0.5), arq=ArqConfig("selective-repeat")
... )
>>> deliveries, trace = Link(cfg, seed=2).run([b"x" * 125] * 3)
>>> sorted(d.seq for d in deliveries), trace.counts()["retransmitted"]
([0, 1, 2], 2)
"""

from __future__ import annotations

import heapq
import math
import operator
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import simpy

from satlink.channel.config import LinkConfig, channel_int, channel_real
from satlink.channel.loss import flip_bits, loss_process, packet_error_rate
from satlink.channel.trace import (
    CODE_CORRUPTED,
    CODE_DELIVERED,
    CODE_DROPPED_QUEUE,
    CODE_DROPPED_VISIBILITY,
    CODE_LOST,
    CODE_RETRANSMITTED,
    CODE_WAITED,
    Delivery,
    LinkResult,
    Trace,
    trace_from_events,
)
from satlink.channel.visibility import Windows
from satlink.config import ChannelConfigError
from satlink.linkbudget import SPEED_OF_LIGHT_KM_S, slant_range_scalar_km

__all__ = ["Link", "LinkRun"]

_CHUNK = 4096  # random draws are made this many at a time: numpy per call, Python per packet
_arrival_time = operator.itemgetter(0)


def _child_seed(seed: int | np.random.SeedSequence, i: int) -> np.random.SeedSequence:
    # derive children by spawn key, not SeedSequence.spawn(): spawn() mutates the parent, so a
    # second run from the same SeedSequence object would silently get different streams
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, i), pool_size=ss.pool_size)


class Link:
    """A seeded satellite link. :meth:`run` or :meth:`stream` simulate one transfer each; every
    call starts from the same seed, so repeated calls give identical results.

    ``integrity_check`` (optional) is the receiver's check, e.g. a CRC verifier; it decides
    whether a copy with flipped bits counts as corrupted (and, with ARQ, is repeated). Without
    it any flipped bit counts, which is what a CRC-32 receiver decides barring a 2^-32 miss.

    >>> link = Link(LinkConfig(rate_bps=1000.0), seed=7)
    >>> res = link.run([b"x" * 125, b"y" * 125])
    >>> [(round(d.t_arrival_s, 6), d.seq) for d in res.deliveries]
    [(1.0, 0), (2.0, 1)]
    """

    def __init__(
        self,
        config: LinkConfig,
        seed: int | np.random.SeedSequence = 0,
        *,
        integrity_check: Callable[[bytes], bool] | None = None,
    ) -> None:
        if not isinstance(config, LinkConfig):
            raise ChannelConfigError(f"config: expected a LinkConfig, got {type(config).__name__}")
        if not isinstance(seed, np.random.SeedSequence):
            seed = np.random.SeedSequence(channel_int("seed", seed, lo=0))
        self.config = config
        self.seed = seed
        self.integrity_check = integrity_check

    def run(
        self,
        packets: Sequence[bytes],
        reliable: Sequence[bool] | None = None,
        *,
        enqueue_times_s: Sequence[float] | None = None,
    ) -> LinkResult:
        """Send ``packets`` (all enqueued at t=0 unless ``enqueue_times_s`` says otherwise).

        ``reliable[i]`` tags packet i for the ``reliable-first-stage`` ARQ (ignored otherwise).
        """
        sim = _Simulation(self, packets, reliable, enqueue_times_s)
        sim.env.run()
        # arrivals were appended in transmission order: nearly sorted, so this is ~linear,
        # and stable, so ties keep transmission order
        deliveries = sorted(sim.arrivals, key=_arrival_time)
        return LinkResult(deliveries, sim.trace())

    def stream(
        self,
        packets: Sequence[bytes],
        reliable: Sequence[bool] | None = None,
        *,
        enqueue_times_s: Sequence[float] | None = None,
    ) -> LinkRun:
        """Like :meth:`run`, but iterate the result to get deliveries as the simulation
        reaches them, in arrival order; ``.trace`` is available once iteration has finished."""
        return LinkRun(_Simulation(self, packets, reliable, enqueue_times_s))


class LinkRun:
    """An in-progress simulation: iterate it for :class:`Delivery` items in arrival order."""

    def __init__(self, sim: _Simulation) -> None:
        self._sim = sim
        self.deliveries: list[Delivery] = []
        self._trace: Trace | None = None

    def __iter__(self) -> Iterator[Delivery]:
        if self._trace is not None:
            yield from self.deliveries
            return
        sim = self._sim
        env, arrivals = sim.env, sim.arrivals
        # heap of (t_arrival_s, transmission order, delivery) not yet handed over
        pending: list[tuple[float, int, Delivery]] = []
        taken = 0
        while True:
            try:
                env.step()
            except simpy.core.EmptySchedule:
                break
            while taken < len(arrivals):
                heapq.heappush(pending, (arrivals[taken][0], taken, arrivals[taken]))
                taken += 1
            # every future transmission starts at or after the next event, so anything due by
            # then is final and can be handed over in order
            horizon = env.peek()
            while pending and pending[0][0] <= horizon:
                d = heapq.heappop(pending)[2]
                self.deliveries.append(d)
                yield d
        for i in range(taken, len(arrivals)):
            heapq.heappush(pending, (arrivals[i][0], i, arrivals[i]))
        while pending:
            d = heapq.heappop(pending)[2]
            self.deliveries.append(d)
            yield d
        self._trace = sim.trace()

    @property
    def trace(self) -> Trace:
        if self._trace is None:
            raise RuntimeError("the trace is complete only after iterating the whole LinkRun")
        return self._trace


class _Simulation:
    """One transfer: the SimPy environment, the sender process and the trace columns."""

    def __init__(
        self,
        link: Link,
        packets: Sequence[bytes],
        reliable: Sequence[bool] | None,
        enqueue_times_s: Sequence[float] | None,
    ) -> None:
        cfg = link.config
        self.cfg = cfg
        self.link = link
        n = len(packets)
        self.packets = [p if type(p) is bytes else bytes(p) for p in packets]
        if reliable is None:
            self.reliable = [False] * n
        else:
            if len(reliable) != n:
                raise ChannelConfigError(
                    f"reliable has {len(reliable)} flags for {n} packets; allowed: one per packet"
                )
            self.reliable = [bool(x) for x in reliable]
        if enqueue_times_s is None:
            self.t_enq = [0.0] * n
        else:
            if len(enqueue_times_s) != n:
                raise ChannelConfigError(
                    f"enqueue_times_s has {len(enqueue_times_s)} values for {n} packets; "
                    "allowed: one per packet"
                )
            self.t_enq = [
                channel_real(f"enqueue_times_s[{i}]", t, lo=0.0)
                for i, t in enumerate(enqueue_times_s)
            ]
            if any(b < a for a, b in zip(self.t_enq, self.t_enq[1:], strict=False)):
                raise ChannelConfigError("enqueue_times_s must be non-decreasing")
        cap = cfg.max_message_bytes
        for i, p in enumerate(self.packets):
            if cap is not None and len(p) > cap:
                raise ChannelConfigError(
                    f"packet {i} is {len(p)} bytes; channel.max_message_bytes = {cap}: fragment "
                    "it first (packets.fragment_bytes) or raise the cap"
                )
        self.windows = Windows(cfg)
        if n:
            longest_tx_s = 8 * max(len(p) for p in self.packets) / cfg.rate_bps
            if longest_tx_s > self.windows.longest_s():
                raise ChannelConfigError(
                    f"a {max(len(p) for p in self.packets)}-byte message takes "
                    f"{longest_tx_s:g} s at channel.rate_bps = {cfg.rate_bps:g}, longer than the "
                    f"longest visibility window ({self.windows.longest_s():g} s); allowed: "
                    "windows at least one message long"
                )
        seed = link.seed
        self.rng_loss = np.random.default_rng(_child_seed(seed, 0))
        self.rng_jitter = np.random.default_rng(_child_seed(seed, 1))
        self.rng_bits = np.random.default_rng(_child_seed(seed, 2))
        self.loss_process = loss_process(cfg.loss, self.rng_loss)
        # one tuple per event, fields as in trace.EVENT_DTYPE
        self.rows: list[tuple[Any, ...]] = []
        # deliveries in transmission order
        self.arrivals: list[Delivery] = []
        self.env = simpy.Environment()
        self.env.process(self._sender())

    def trace(self) -> Trace:
        return trace_from_events(
            self.rows, self.reliable, [len(p) for p in self.packets], self.t_enq
        )

    def _sender(self) -> Iterator[simpy.Event]:
        """The transmitter: one SimPy process, one timeout per message on the wire."""
        cfg = self.cfg
        env = self.env
        timeout = env.timeout
        packets, reliable_flags, t_enq = self.packets, self.reliable, self.t_enq
        n = len(packets)
        rate = float(cfg.rate_bps)
        limit = cfg.queue_limit_packets if cfg.queue_limit_packets is not None else n + 1
        min_interval = float(cfg.min_interval_s)
        windows = self.windows
        always_visible = windows.mode == "always"
        drop_outside = cfg.visibility.outside == "drop"

        delay = cfg.delay
        cpass = delay.circular_pass()
        geometry = delay.mode == "geometry"
        fixed_elevation = float(delay.elevation_deg)
        hops, alt_km = delay.hops, float(delay.altitude_km)
        const_delay = delay.nominal_delay_s()  # used unless the elevation moves
        proc_delay = float(delay.processing_delay_s)
        jitter_s = float(delay.jitter_s)

        loss_model = cfg.loss.model
        chunked_loss = loss_model in ("none", "bernoulli", "gilbert-elliott")
        is_ge = loss_model == "gilbert-elliott"
        budget_per = loss_model == "budget-per"
        bit_errors = loss_model == "bit-errors"
        ber_at = cfg.budget.ber_function() if cfg.budget is not None else None
        integrity_check = self.link.integrity_check
        rng_loss, rng_bits = self.rng_loss, self.rng_bits

        arq = cfg.arq
        arq_all = arq.mode == "selective-repeat"
        arq_tagged = arq.mode == "reliable-first-stage"
        max_retries = arq.max_retries
        return_delay = arq.return_delay_s

        rows = self.rows
        record = rows.append  # one tuple per event; columns are built once at the end
        arrive = self.arrivals.append
        new_delivery = tuple.__new__  # what Delivery(...) does, minus a Python-level call
        nan = math.nan

        # pre-drawn randomness, refilled a chunk at a time
        lost_buf: list[bool] = []
        bad_buf: list[bool] = []
        u_buf: list[float] = []
        jit_buf: list[float] = []
        k_loss = k_u = k_jit = 0

        queue: deque[int] = deque()
        retx: list[tuple[float, int, int]] = []  # (time the NAK reaches the sender, seq, attempt)
        next_i = 0
        last_start = -math.inf

        while True:
            now = env.now
            # admit everything enqueued by now; the queue only shrinks when the sender takes
            # a message, so lazily admitting at this instant sees the right queue length
            while next_i < n and t_enq[next_i] <= now:
                if len(queue) >= limit:
                    record((next_i, 0, nan, nan, nan, nan, 0.0, nan, CODE_DROPPED_QUEUE, 0, 0))
                else:
                    queue.append(next_i)
                next_i += 1
            if retx and retx[0][0] <= now:  # repeats go first: they block the receiver's window
                _, seq, attempt = heapq.heappop(retx)
            elif queue:
                seq = queue.popleft()
                attempt = 0
            else:
                wake = min(
                    retx[0][0] if retx else math.inf, t_enq[next_i] if next_i < n else math.inf
                )
                if wake == math.inf:
                    return
                yield timeout(wake - now)
                continue

            payload = packets[seq]
            bits = 8 * len(payload)
            tx_s = bits / rate
            t0 = now if now > last_start + min_interval else last_start + min_interval
            wait = 0.0
            win_start = win_end = nan
            if not always_visible:
                fit = windows.fit(t0, tx_s)
                if fit is None or (drop_outside and fit[0] > t0):
                    record(
                        (seq, attempt, nan, nan, nan, nan, 0.0, nan, CODE_DROPPED_VISIBILITY, 0, 0)
                    )
                    continue
                start, win_start, win_end = fit
                if start > t0:
                    wait = start - t0
                    record((seq, attempt, start, nan, nan, nan, wait, nan, CODE_WAITED, 0, 0))
                    t0 = start
            t1 = t0 + tx_s  # exactly bits / rate
            last_start = t0

            # geometry at the end of transmission (when the last bit leaves)
            if cpass is not None:
                el = cpass.elevation_deg_scalar(t1 - 0.5 * (win_start + win_end))
                el = 0.0 if el < 0.0 else el
                if geometry:
                    d = hops * slant_range_scalar_km(alt_km, el) / SPEED_OF_LIGHT_KM_S + proc_delay
                else:
                    d = const_delay
            else:
                el = fixed_elevation
                d = const_delay
            if jitter_s > 0.0:
                if k_jit == len(jit_buf):
                    jit_buf = (self.rng_jitter.random(_CHUNK) * jitter_s).tolist()
                    k_jit = 0
                d += jit_buf[k_jit]
                k_jit += 1

            flips = 0
            state = 0
            if chunked_loss:
                if k_loss == len(lost_buf):
                    lost_arr, bad_arr = self.loss_process.draw(_CHUNK)
                    lost_buf, bad_buf = lost_arr.tolist(), bad_arr.tolist()
                    k_loss = 0
                lost = lost_buf[k_loss]
                if is_ge:
                    state = 2 if bad_buf[k_loss] else 1  # indices into trace.CHANNEL_STATES
                k_loss += 1
            elif budget_per:
                assert ber_at is not None
                per = packet_error_rate(bits, ber_at(el))
                if k_u == len(u_buf):
                    u_buf = rng_loss.random(_CHUNK).tolist()
                    k_u = 0
                lost = u_buf[k_u] < per
                k_u += 1
            else:  # bit errors: flip real bits, vectorised, at the budget's BER
                assert bit_errors and ber_at is not None
                lost = False
                payload, flips = flip_bits(payload, ber_at(el), rng_bits)

            if lost:
                t_arr = nan
                outcome = CODE_LOST
                failed = True
            else:
                t_arr = t1 + d
                arrive(new_delivery(Delivery, (t_arr, seq, payload)))
                if flips and (integrity_check is None or not integrity_check(payload)):
                    outcome = CODE_CORRUPTED
                    failed = True
                else:
                    outcome = CODE_DELIVERED
                    failed = False
            if (
                failed
                and attempt < max_retries
                and (arq_all or (arq_tagged and reliable_flags[seq]))
            ):
                outcome = CODE_RETRANSMITTED
                back = d if return_delay is None else return_delay
                heapq.heappush(retx, (t1 + d + back, seq, attempt + 1))
            record((seq, attempt, t0, t1, t_arr, d, wait, el, outcome, flips, state))
            yield timeout(t1 - now)
