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

from satlink.channel.arq import ReturnLink
from satlink.channel.config import LinkConfig, channel_int, channel_real
from satlink.channel.loss import TimedChain, flip_bits, flip_error_events, loss_process
from satlink.channel.trace import (
    CODE_ABANDONED,
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
from satlink.modulation import ber_for_ebn0, bits_per_error_event, message_error_rate

__all__ = ["Link", "LinkRun"]

# the times, delay, wait, elevation, Eb/N0 and PER of an event with no transmission
_NO_TX = (math.nan,) * 4 + (0.0,) + (math.nan,) * 3
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
        self.rng_service = np.random.default_rng(_child_seed(seed, 3))
        self.rng_chain = np.random.default_rng(_child_seed(seed, 4))
        self.loss_process = loss_process(cfg.loss, self.rng_loss)
        self.max_retries = cfg.arq.max_retries
        self.retx: list[tuple[float, int, int]] = []
        self.in_flight: set[int] = set()
        self.unreported = 0  # ARQ attempts whose ACK/NAK has not reached the sender yet
        self.wake: simpy.Event | None = None
        # one tuple per event, fields as in trace.EVENT_DTYPE
        self.rows: list[tuple[Any, ...]] = []
        # deliveries in transmission order
        self.arrivals: list[Delivery] = []
        self.env = simpy.Environment()
        self.return_link: ReturnLink | None = None
        if cfg.arq.mode != "none" and cfg.return_link.mode == "messages":
            self.return_link = ReturnLink(
                self.env,
                cfg.return_link,
                np.random.default_rng(_child_seed(seed, 5)),
                self._deliver_reports,
            )
        self.env.process(self._sender())

    def trace(self) -> Trace:
        trace = trace_from_events(
            self.rows, self.reliable, [len(p) for p in self.packets], self.t_enq
        )
        trace.return_events = list(self.return_link.events) if self.return_link else []
        return trace

    def _deliver_reports(self, t_s: float, entries: list[tuple[int, int, bool]]) -> None:
        """A return message reached the sender: schedule the repeats its NAKs ask for, free
        window slots, and wake the sender if it waits."""
        for seq, attempt, ok in entries:
            if ok or attempt >= self.max_retries:
                self.in_flight.discard(seq)
            else:
                heapq.heappush(self.retx, (t_s, seq, attempt + 1))
            self.unreported -= 1
        if self.wake is not None and not self.wake.triggered:
            self.wake.succeed()

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
        track = cfg.track if delay.elevation_mode == "orbit" else None
        half_pass_s = 0.5 * windows.pass_duration_s
        geometry = delay.mode == "geometry"
        fixed_elevation = float(delay.elevation_deg)
        hops, alt_km = delay.hops, float(delay.altitude_km)
        fixed_range_km = slant_range_scalar_km(alt_km, fixed_elevation)
        const_delay = delay.nominal_delay_s()  # used unless the geometry moves
        proc_delay = float(delay.processing_delay_s)
        jitter_s = float(delay.jitter_s)
        lat_lo = delay.service_latency_min_s
        lat_span = (delay.service_latency_max_s or 0.0) - (lat_lo or 0.0)

        lc = cfg.loss
        loss_model = lc.model
        timed = lc.step_s is not None
        chunked_loss = loss_model in ("none", "bernoulli") or (
            loss_model == "gilbert-elliott" and not timed
        )
        is_ge = loss_model == "gilbert-elliott"
        budget_model = loss_model in ("budget-per", "bit-errors")
        bit_errors = loss_model == "bit-errors"
        chain = None
        if lc.has_chain and not chunked_loss:
            chain = TimedChain(lc.p, lc.r, float(self.rng_chain.random()))
        step_s = float(lc.step_s) if timed else 0.0
        shadow_db, fade_db = float(lc.shadow_db), float(lc.fade_margin_db)
        service_p = float(lc.service_loss_p)
        bern_p = float(lc.p) if loss_model == "bernoulli" else 0.0
        budget = cfg.budget
        ebn0_at = budget.ebn0_function() if budget is not None else None
        modulation = budget.modulation if budget is not None else "bpsk"
        integrity_check = self.link.integrity_check
        rng_loss, rng_bits, rng_service = self.rng_loss, self.rng_bits, self.rng_service

        arq = cfg.arq
        arq_all = arq.mode == "selective-repeat"
        arq_tagged = arq.mode == "reliable-first-stage"
        max_retries = arq.max_retries
        return_delay = arq.return_delay_s
        rl = self.return_link
        window = arq.window_messages if rl is not None else None
        in_flight = self.in_flight

        rows = self.rows
        record = rows.append  # one tuple per event; columns are built once at the end
        arrive = self.arrivals.append
        new_delivery = tuple.__new__  # what Delivery(...) does, minus a Python-level call
        nan = math.nan

        def record_drop(seq: int, attempt: int, code: int) -> None:
            # a message that never went on air: no times, no geometry, no bits
            record((seq, attempt, nan, nan, nan, nan, 0.0, nan, nan, nan, code, 0, 0))

        # pre-drawn randomness, refilled a chunk at a time
        lost_buf: list[bool] = []
        bad_buf: list[bool] = []
        u_buf: list[float] = []
        jit_buf: list[float] = []
        k_loss = k_u = k_jit = 0

        def uniform() -> float:
            nonlocal u_buf, k_u
            if k_u == len(u_buf):
                u_buf = rng_loss.random(_CHUNK).tolist()
                k_u = 0
            k_u += 1
            return u_buf[k_u - 1]

        queue: deque[int] = deque()
        retx = self.retx  # (time the NAK reaches the sender, seq, attempt)
        next_i = 0
        last_start = -math.inf
        t_chain = 0.0  # time (or message count) the chain was last read at

        while True:
            now = env.now
            # admit everything enqueued by now; the queue only shrinks when the sender takes
            # a message, so lazily admitting at this instant sees the right queue length
            while next_i < n and t_enq[next_i] <= now:
                if len(queue) >= limit:
                    record_drop(next_i, 0, CODE_DROPPED_QUEUE)
                else:
                    queue.append(next_i)
                next_i += 1
            window_full = window is not None and len(in_flight) >= window
            if retx and retx[0][0] <= now:  # repeats go first: they block the receiver's window
                _, seq, attempt = heapq.heappop(retx)
            elif queue and not window_full:
                seq = queue.popleft()
                attempt = 0
            else:
                wake = min(
                    retx[0][0] if retx else math.inf,
                    t_enq[next_i] if next_i < n else math.inf,
                )
                if wake == math.inf and self.unreported == 0 and not (queue and window_full):
                    return
                if wake == math.inf or (rl is not None and self.unreported):
                    # wait for a return message (or the next enqueue / due repeat)
                    self.wake = env.event()
                    if wake < math.inf:
                        yield self.wake | timeout(wake - now)
                    else:
                        yield self.wake
                    self.wake = None
                else:
                    yield timeout(wake - now)
                continue

            payload = packets[seq]
            bits = 8 * len(payload)
            tx_s = bits / rate
            t0 = now if now > last_start + min_interval else last_start + min_interval
            wait = 0.0
            if not always_visible:
                fit = windows.fit(t0, tx_s)
                if fit is None or (drop_outside and fit[0] > t0):
                    record_drop(seq, attempt, CODE_DROPPED_VISIBILITY)
                    if rl is not None:
                        in_flight.discard(seq)
                    continue
                start = fit[0]
                if start > t0:
                    wait = start - t0
                    record(
                        (seq, attempt, start, nan, nan, nan, wait, nan, nan, nan, CODE_WAITED, 0, 0)
                    )
                    t0 = start
            t1 = t0 + tx_s  # exactly bits / rate
            last_start = t0

            # geometry at the end of transmission (when the last bit leaves)
            if track is not None:
                el, range_km = track.at(t1)
            elif cpass is not None:
                el = cpass.elevation_deg_scalar(t1 - windows.pass_start_s(t1) - half_pass_s)
                el = 0.0 if el < 0.0 else el
                range_km = slant_range_scalar_km(alt_km, el)
            else:
                el, range_km = fixed_elevation, fixed_range_km
            if geometry and (track is not None or cpass is not None):
                d = hops * range_km / SPEED_OF_LIGHT_KM_S + proc_delay
            else:
                d = const_delay
            if jitter_s > 0.0:
                if k_jit == len(jit_buf):
                    jit_buf = (self.rng_jitter.random(_CHUNK) * jitter_s).tolist()
                    k_jit = 0
                d += jit_buf[k_jit]
                k_jit += 1
            if lat_lo is not None:  # the service's end-to-end latency, from the first bit
                e2e = lat_lo + lat_span * float(self.rng_jitter.random())
                d = max(d, t0 + e2e - t1)

            # the chain (Gilbert-Elliott in time, or shadowing) at this message
            state = 0
            shadowed = False
            if chain is not None:
                steps = (t1 - t_chain) / step_s if timed else 1.0
                t_chain = t1 if timed else t_chain
                shadowed = chain.advance(steps, uniform())
                state = 2 if shadowed else 1  # indices into trace.CHANNEL_STATES

            ebn0 = nan
            per_rf = 0.0
            if ebn0_at is not None:
                ebn0 = ebn0_at(el, range_km) - fade_db - (shadow_db if shadowed else 0.0)
            flips = 0
            if chunked_loss:
                if k_loss == len(lost_buf):
                    lost_arr, bad_arr = self.loss_process.draw(_CHUNK)
                    lost_buf, bad_buf = lost_arr.tolist(), bad_arr.tolist()
                    k_loss = 0
                lost = lost_buf[k_loss]
                if is_ge:
                    bad = bad_buf[k_loss]
                    state = 2 if bad else 1
                    per_rf = lc.loss_bad if bad else lc.loss_good
                else:
                    per_rf = bern_p
                k_loss += 1
                if service_p > 0.0 and not lost:
                    lost = bool(rng_service.random() < service_p)
                per = 1.0 - (1.0 - per_rf) * (1.0 - service_p)
            elif is_ge:  # Gilbert-Elliott stepping in time
                per_rf = lc.loss_bad if shadowed else lc.loss_good
                per = 1.0 - (1.0 - per_rf) * (1.0 - service_p)
                lost = uniform() < per
            else:
                assert budget_model and ebn0_at is not None
                per_rf = message_error_rate(ebn0, bits, modulation)
                per = 1.0 - (1.0 - per_rf) * (1.0 - service_p)
                if bit_errors:  # flip real bits; the receiver's CRC decides
                    lost = service_p > 0.0 and bool(rng_service.random() < service_p)
                    if not lost:
                        ber = ber_for_ebn0(ebn0, modulation)
                        bpe = bits_per_error_event(ebn0, modulation)
                        if bpe > 1.0:
                            payload, flips = flip_error_events(payload, ber / bpe, bpe, rng_bits)
                        else:
                            payload, flips = flip_bits(payload, ber, rng_bits)
                else:
                    lost = uniform() < per

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
            covered = arq_all or (arq_tagged and reliable_flags[seq])
            if covered:
                if failed:
                    outcome = CODE_RETRANSMITTED if attempt < max_retries else CODE_ABANDONED
                if rl is not None:  # the receiver reports it over the return link
                    in_flight.add(seq)
                    self.unreported += 1
                    rl.report(t1 + d, seq, attempt, not failed, d)
                elif failed and attempt < max_retries:
                    back = d if return_delay is None else return_delay
                    heapq.heappush(retx, (t1 + d + back, seq, attempt + 1))
            record((seq, attempt, t0, t1, t_arr, d, wait, el, ebn0, per, outcome, flips, state))
            yield timeout(t1 - now)
