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
* Loss, the Gilbert-Elliott state and bit errors advance once per transmission, not per second.
* Jitter is uniform in ``[0, jitter_s)`` and added to the propagation delay, so arrivals may be
  reordered; a receiver must cope (satlink's reassembler does).
* The return link of the ARQ is reliable; the sender learns of a loss one round trip after the
  attempt, as when the receiver NAKs the gap it sees. Repeats go before new messages.
* When the sender frees up it commits to the next message (a repeat that is due, else the head
  of the queue); that message then waits for its interval slot or window, and a NAK arriving
  meanwhile is served after it.
* Deliveries include every copy that reached the receiver: duplicates, and copies with flipped
  bits, which the receiver's CRC rejects.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import heapq
import io
import math
import operator
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import simpy

from satlink.linkbudget import (
    SPEED_OF_LIGHT_KM_S,
    BudgetConfig,
    CircularPass,
    ConfigError,
    _slant_range_scalar_km,
    check_choice,
    check_int,
    check_real,
)

__all__ = [
    "ARQ_MODES",
    "CHANNEL_STATES",
    "DELAY_MODES",
    "ELEVATION_MODES",
    "LOSS_MODELS",
    "OUTCOMES",
    "OUTSIDE_MODES",
    "VISIBILITY_MODES",
    "ArqConfig",
    "Bernoulli",
    "ChannelConfigError",
    "DelayConfig",
    "Delivery",
    "GilbertElliott",
    "Link",
    "LinkConfig",
    "LinkResult",
    "LinkRun",
    "LossConfig",
    "Trace",
    "VisibilityConfig",
    "gilbert_elliott_stationary_loss",
]

DELAY_MODES = ("fixed", "geometry")
ELEVATION_MODES = ("fixed", "pass")
VISIBILITY_MODES = ("always", "windows", "periodic")
OUTSIDE_MODES = ("wait", "drop")
LOSS_MODELS = ("none", "bernoulli", "gilbert-elliott", "budget-per", "bit-errors")
ARQ_MODES = ("none", "selective-repeat", "reliable-first-stage")
OUTCOMES = (
    "delivered",
    "lost",
    "corrupted",
    "retransmitted",
    "dropped-queue",
    "dropped-visibility",
    "waited-for-visibility",
)

_CHUNK = 4096  # random draws are made this many at a time: numpy per call, Python per packet
CHANNEL_STATES = ("-", "good", "bad")  # "-": the loss model has no state
# the sender stores small ints per event; the trace turns them into names once, vectorised
_DELIVERED, _LOST, _CORRUPTED, _RETX, _DROP_QUEUE, _DROP_VIS, _WAITED = range(len(OUTCOMES))


class ChannelConfigError(ConfigError):
    """An invalid channel parameter or input; the message names the field and the allowed range."""


def _real(name: str, value: Any, **kw: Any) -> float:
    return check_real(name, value, error=ChannelConfigError, **kw)


def _int(name: str, value: Any, **kw: Any) -> int:
    return check_int(name, value, error=ChannelConfigError, **kw)


def _choice(name: str, value: Any, choices: Sequence[str]) -> str:
    return check_choice(name, value, choices, error=ChannelConfigError)


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DelayConfig:
    """One-way delay: ``fixed`` (``delay_s``) or ``geometry`` (``hops`` x slant range / c).

    Both add ``processing_delay_s`` and uniform jitter in ``[0, jitter_s)``. The geometry fields
    (altitude, elevation, pass) also drive the link-budget loss models. With
    ``elevation_mode = "pass"`` the elevation follows a circular-orbit pass centred on each
    visibility window, so delay and Eb/N0 vary over the window.

    >>> d = DelayConfig(mode="geometry", altitude_km=35_786.0, elevation_deg=90.0, hops=1)
    >>> round(d.nominal_delay_s(), 4)
    0.1194
    """

    mode: str = "fixed"
    delay_s: float = 0.0
    jitter_s: float = 0.0
    processing_delay_s: float = 0.0
    altitude_km: float = 35_786.0
    elevation_deg: float = 90.0
    elevation_mode: str = "fixed"
    max_elevation_deg: float = 90.0
    min_elevation_deg: float = 10.0
    hops: int = 1

    def __post_init__(self) -> None:
        _choice("channel.delay.mode", self.mode, DELAY_MODES)
        _real("channel.delay.delay_s", self.delay_s, lo=0.0, hi=86_400.0)
        _real("channel.delay.jitter_s", self.jitter_s, lo=0.0, hi=86_400.0)
        _real("channel.delay.processing_delay_s", self.processing_delay_s, lo=0.0, hi=86_400.0)
        _real("channel.delay.altitude_km", self.altitude_km, lo=100.0, hi=400_000.0)
        _real("channel.delay.elevation_deg", self.elevation_deg, lo=0.0, hi=90.0)
        _choice("channel.delay.elevation_mode", self.elevation_mode, ELEVATION_MODES)
        _real("channel.delay.max_elevation_deg", self.max_elevation_deg, lo=0.0, hi=90.0)
        _real("channel.delay.min_elevation_deg", self.min_elevation_deg, lo=0.0, hi=90.0)
        if self.min_elevation_deg > self.max_elevation_deg:
            raise ChannelConfigError(
                f"channel.delay.min_elevation_deg = {self.min_elevation_deg!r} is above "
                f"channel.delay.max_elevation_deg = {self.max_elevation_deg!r}; allowed: "
                "0 <= min_elevation_deg <= max_elevation_deg <= 90"
            )
        _int("channel.delay.hops", self.hops, lo=1, hi=16)

    def circular_pass(self) -> CircularPass | None:
        """The pass geometry when ``elevation_mode == "pass"``, else None."""
        if self.elevation_mode != "pass":
            return None
        return CircularPass(self.altitude_km, self.max_elevation_deg, self.min_elevation_deg)

    def nominal_delay_s(self, elevation_deg: float | None = None) -> float:
        """Delay without jitter at ``elevation_deg`` (default: the fixed elevation)."""
        if self.mode == "fixed":
            return self.delay_s + self.processing_delay_s
        el = self.elevation_deg if elevation_deg is None else elevation_deg
        d_km = _slant_range_scalar_km(self.altitude_km, el)
        return self.hops * d_km / SPEED_OF_LIGHT_KM_S + self.processing_delay_s


@dataclass(frozen=True)
class VisibilityConfig:
    """When the satellite can be used: ``always``, explicit ``windows``, or ``periodic`` passes.

    ``windows_s`` is a sequence of ``(start_s, end_s)``. ``periodic`` windows start at
    ``first_start_s + k * period_s`` and last ``duration_s`` (default: the pass duration from the
    delay geometry when ``elevation_mode = "pass"``). ``outside`` says what the message at the
    head of the queue does when no window is open: ``wait`` for the next one, or ``drop``.

    >>> VisibilityConfig(mode="periodic", first_start_s=0.0, duration_s=600.0, period_s=5700.0)
    ... # doctest: +ELLIPSIS
    VisibilityConfig(mode='periodic', ...)
    """

    mode: str = "always"
    windows_s: tuple[tuple[float, float], ...] = ()
    first_start_s: float = 0.0
    duration_s: float | None = None
    period_s: float | None = None
    outside: str = "wait"

    def __post_init__(self) -> None:
        _choice("channel.visibility.mode", self.mode, VISIBILITY_MODES)
        _choice("channel.visibility.outside", self.outside, OUTSIDE_MODES)
        windows = tuple(tuple(w) for w in self.windows_s)  # accept lists from TOML/JSON
        object.__setattr__(self, "windows_s", windows)
        if self.mode == "windows":
            if not windows:
                raise ChannelConfigError(
                    "channel.visibility.windows_s is empty with mode = 'windows' and "
                    f"outside = {self.outside!r}; allowed: at least one [start_s, end_s] window "
                    "with 0 <= start_s < end_s (or mode = 'always')"
                )
            prev_end = -math.inf
            for i, w in enumerate(windows):
                name = f"channel.visibility.windows_s[{i}]"
                if len(w) != 2:
                    raise ChannelConfigError(f"{name} = {list(w)!r}: expected [start_s, end_s]")
                start = _real(f"{name}[0]", w[0], lo=0.0)
                end = _real(f"{name}[1]", w[1], lo=start, lo_open=True)
                if start < prev_end:
                    raise ChannelConfigError(
                        f"{name} = {list(w)!r} starts before the previous window ends "
                        f"({prev_end:g}); allowed: sorted, non-overlapping windows"
                    )
                prev_end = end
        _real("channel.visibility.first_start_s", self.first_start_s, lo=0.0)
        if self.mode == "periodic":
            if self.period_s is None:
                raise ChannelConfigError(
                    "channel.visibility.period_s is missing; mode = 'periodic' needs period_s > 0"
                )
            _real("channel.visibility.period_s", self.period_s, lo=0.0, lo_open=True)
        if self.duration_s is not None:
            hi = self.period_s if self.mode == "periodic" and self.period_s is not None else None
            _real("channel.visibility.duration_s", self.duration_s, lo=0.0, lo_open=True, hi=hi)


@dataclass(frozen=True)
class LossConfig:
    """Loss model: ``none``, ``bernoulli`` (loss probability ``p``), ``gilbert-elliott``
    (``p`` = P(good->bad), ``r`` = P(bad->good), loss ``loss_good`` / ``loss_bad`` in each state),
    ``budget-per`` (erasure with the link budget's PER at the current elevation) or
    ``bit-errors`` (flip bits at the budget's BER; the receiver's CRC decides).

    >>> round(LossConfig("gilbert-elliott", p=0.01, r=0.2, loss_bad=0.8).stationary_loss(), 4)
    0.0381
    """

    model: str = "none"
    p: float = 0.0
    r: float = 1.0
    loss_good: float = 0.0
    loss_bad: float = 1.0

    def __post_init__(self) -> None:
        _choice("channel.loss.model", self.model, LOSS_MODELS)
        for name in ("p", "r", "loss_good", "loss_bad"):
            _real(f"channel.loss.{name}", getattr(self, name), lo=0.0, hi=1.0)

    def stationary_loss(self) -> float:
        """Long-run loss probability per transmission (budget models: not defined, NaN)."""
        if self.model == "none":
            return 0.0
        if self.model == "bernoulli":
            return float(self.p)
        if self.model == "gilbert-elliott":
            return gilbert_elliott_stationary_loss(self.p, self.r, self.loss_good, self.loss_bad)
        return math.nan


@dataclass(frozen=True)
class ArqConfig:
    """Return link and ARQ: ``none``, ``selective-repeat`` (every message NAKed/ACKed over the
    return link and resent up to ``max_retries`` times), or ``reliable-first-stage`` (only messages
    the sender tags ``reliable=True`` are repeated; the rest are best effort, as LTP's red and
    green parts, RFC 5326). ``return_delay_s`` defaults to the forward delay of the attempt.
    """

    mode: str = "none"
    return_delay_s: float | None = None
    max_retries: int = 3

    def __post_init__(self) -> None:
        _choice("channel.arq.mode", self.mode, ARQ_MODES)
        if self.return_delay_s is not None:
            _real("channel.arq.return_delay_s", self.return_delay_s, lo=0.0, hi=86_400.0)
        _int("channel.arq.max_retries", self.max_retries, lo=0, hi=1000)


@dataclass(frozen=True)
class LinkConfig:
    """Everything the link needs. ``budget`` is required by the ``budget-per`` and
    ``bit-errors`` loss models.

    >>> LinkConfig(rate_bps=-1.0)
    Traceback (most recent call last):
    ...
    satlink.channel.ChannelConfigError: channel.rate_bps = -1.0 is out of range; allowed: > 0
    """

    rate_bps: float = 2400.0
    queue_limit_packets: int | None = None
    min_interval_s: float = 0.0
    max_message_bytes: int | None = None
    delay: DelayConfig = field(default_factory=DelayConfig)
    visibility: VisibilityConfig = field(default_factory=VisibilityConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    arq: ArqConfig = field(default_factory=ArqConfig)
    budget: BudgetConfig | None = None

    def __post_init__(self) -> None:
        _real("channel.rate_bps", self.rate_bps, lo=0.0, lo_open=True)
        if self.queue_limit_packets is not None:
            _int("channel.queue_limit_packets", self.queue_limit_packets, lo=1)
        _real("channel.min_interval_s", self.min_interval_s, lo=0.0, hi=86_400.0)
        if self.max_message_bytes is not None:
            _int("channel.max_message_bytes", self.max_message_bytes, lo=1)
        for name, typ in (
            ("delay", DelayConfig),
            ("visibility", VisibilityConfig),
            ("loss", LossConfig),
            ("arq", ArqConfig),
        ):
            if not isinstance(getattr(self, name), typ):
                raise ChannelConfigError(f"channel.{name}: expected a {typ.__name__}")
        if self.loss.model in ("budget-per", "bit-errors") and self.budget is None:
            raise ChannelConfigError(
                f"channel.loss.model = {self.loss.model!r} needs a link budget; add a [budget] "
                "section (freq_hz, eirp_dbw, gt_dbk) or choose another model"
            )
        if self.delay.elevation_mode == "pass" and self.visibility.mode == "always":
            raise ChannelConfigError(
                "channel.delay.elevation_mode = 'pass' needs passes: set channel.visibility.mode "
                "to 'windows' or 'periodic'"
            )
        if self.visibility.mode == "periodic" and self.visibility.duration_s is None:
            if self.delay.elevation_mode != "pass":
                raise ChannelConfigError(
                    "channel.visibility.duration_s is missing; allowed: 0 < duration_s <= "
                    "period_s (or channel.delay.elevation_mode = 'pass' to take the pass's)"
                )
            pass_s = self.pass_duration_s()
            assert self.visibility.period_s is not None  # checked by VisibilityConfig
            if pass_s > self.visibility.period_s:
                raise ChannelConfigError(
                    f"channel.visibility.period_s = {self.visibility.period_s!r} is shorter than "
                    f"the pass ({pass_s:.1f} s); allowed: period_s >= pass duration"
                )

    def pass_duration_s(self) -> float:
        cp = self.delay.circular_pass()
        return cp.duration_s if cp is not None else math.nan

    def window_duration_s(self) -> float | None:
        """Duration of periodic windows (given or from the pass); None for other modes."""
        v = self.visibility
        if v.mode != "periodic":
            return None
        return v.duration_s if v.duration_s is not None else self.pass_duration_s()


# ---------------------------------------------------------------------------------------------
# Loss processes (vectorised; the link consumes them in chunks)
# ---------------------------------------------------------------------------------------------


def gilbert_elliott_stationary_loss(p: float, r: float, loss_good: float, loss_bad: float) -> float:
    """Long-run loss of a Gilbert-Elliott channel: (r*loss_good + p*loss_bad) / (p + r).

    >>> gilbert_elliott_stationary_loss(0.1, 0.4, 0.0, 1.0)
    0.2
    """
    if p + r == 0.0:
        return float(loss_good)  # the chain never leaves the good state it starts in
    return (r * loss_good + p * loss_bad) / (p + r)


class Bernoulli:
    """Independent losses with probability ``p``.

    >>> lost, bad = Bernoulli(0.5, np.random.default_rng(0)).draw(4)
    >>> lost.tolist()
    [False, True, True, True]
    """

    def __init__(self, p: float, rng: np.random.Generator) -> None:
        self.p = p
        self.rng = rng

    def draw(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` loss decisions and (all-False) bad-state flags."""
        return self.rng.random(n) < self.p, np.zeros(n, dtype=bool)


class GilbertElliott:
    """Two-state Markov loss; the chain carries over between :meth:`draw` calls.

    Vectorised by sojourns: a run in one state lasts Geometric(leave probability) steps, so the
    state sequence is ``np.repeat`` of alternating run lengths. Because the geometric law is
    memoryless, a run cut at the end of a chunk continues correctly in the next one.

    >>> ge = GilbertElliott(0.05, 0.5, 0.0, 1.0, np.random.default_rng(3))
    >>> lost, bad = ge.draw(100_000)
    >>> round(float(lost.mean()), 3)
    0.091
    """

    def __init__(
        self, p: float, r: float, loss_good: float, loss_bad: float, rng: np.random.Generator
    ) -> None:
        self.p, self.r = p, r
        self.loss_good, self.loss_bad = loss_good, loss_bad
        self.rng = rng
        # start in the stationary distribution, so short runs are not biased towards "good"
        pi_bad = p / (p + r) if p + r > 0 else 0.0
        self.bad = bool(rng.random() < pi_bad)

    def _states(self, n: int) -> np.ndarray:
        out = np.empty(n, dtype=bool)
        pos = 0
        rng = self.rng
        mean_cycle = (1.0 / self.p if self.p > 0 else n) + (1.0 / self.r if self.r > 0 else n)
        while pos < n:
            rem = n - pos
            k = int(rem / mean_cycle * 1.2) + 8  # cycles of (this state, other state)
            q_this = self.r if self.bad else self.p  # probability of leaving each state
            q_other = self.p if self.bad else self.r
            lens = np.empty(2 * k, dtype=np.int64)
            lens[0::2] = rng.geometric(q_this, k) if q_this > 0 else rem + 1  # never leaves
            lens[1::2] = rng.geometric(q_other, k) if q_other > 0 else rem + 1
            # clip to rem + 1: a clipped run still overruns the chunk, so it is treated as cut
            # (and continues in the next chunk: memoryless, still exact) rather than as ending
            np.minimum(lens, rem + 1, out=lens)
            vals = np.empty(2 * k, dtype=bool)
            vals[0::2] = self.bad
            vals[1::2] = not self.bad
            ends = np.cumsum(lens)
            if ends[-1] < rem:  # all runs complete: next state is this one again
                out[pos : pos + ends[-1]] = np.repeat(vals, lens)
                pos += int(ends[-1])
                continue
            j = int(np.searchsorted(ends, rem))  # the run that reaches the end of the chunk
            out[pos:] = np.repeat(vals[: j + 1], lens[: j + 1])[:rem]
            # a run ending exactly at the chunk end hands over to the other state
            self.bad = (not vals[j]) if ends[j] == rem else bool(vals[j])
            pos = n
        return out

    def draw(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` loss decisions and the bad-state flag of each."""
        bad = self._states(n)
        u = self.rng.random(n)
        lost = np.where(bad, u < self.loss_bad, u < self.loss_good)
        return lost, bad


class _NoLoss:
    def draw(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        z = np.zeros(n, dtype=bool)
        return z, z


# ---------------------------------------------------------------------------------------------
# Visibility
# ---------------------------------------------------------------------------------------------


class _Windows:
    """Finds the earliest time a message of a given duration fits inside a window."""

    def __init__(self, cfg: LinkConfig) -> None:
        v = cfg.visibility
        self.mode = v.mode
        self.starts = [float(w[0]) for w in v.windows_s]
        self.ends = [float(w[1]) for w in v.windows_s]
        self.first = float(v.first_start_s)
        self.period = float(v.period_s) if v.period_s is not None else math.inf
        self.duration = cfg.window_duration_s() or 0.0

    def longest_s(self) -> float:
        if self.mode == "always":
            return math.inf
        if self.mode == "periodic":
            return self.duration
        return max(e - s for s, e in zip(self.starts, self.ends, strict=True))

    def fit(self, t: float, dur: float) -> tuple[float, float, float] | None:
        """(start, window_start, window_end) of the earliest fit at or after ``t``, or None."""
        if self.mode == "periodic":
            k = max(0, math.floor((t - self.first) / self.period))
            ws = self.first + k * self.period
            if t > ws and t + dur > ws + self.duration:  # too late in this window: next one
                ws += self.period
            start = t if t > ws else ws
            return start, ws, ws + self.duration
        # explicit windows: the first window that ends after t and can hold the message
        i = bisect.bisect_right(self.ends, t)
        while i < len(self.starts):
            ws, we = self.starts[i], self.ends[i]
            start = t if t > ws else ws
            if start + dur <= we:
                return start, ws, we
            i += 1
        return None


# ---------------------------------------------------------------------------------------------
# Trace and results
# ---------------------------------------------------------------------------------------------


class Delivery(NamedTuple):
    """A copy that reached the receiver (possibly with flipped bits: the receiver's CRC decides)."""

    t_arrival_s: float
    seq: int
    payload: bytes


_TRACE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("seq", "i8"),
    ("attempt", "i8"),
    ("reliable", "?"),
    ("size_bytes", "i8"),
    ("t_enqueue_s", "f8"),
    ("t_tx_start_s", "f8"),
    ("t_tx_end_s", "f8"),
    ("t_arrival_s", "f8"),
    ("delay_s", "f8"),
    ("wait_s", "f8"),
    ("elevation_deg", "f8"),
    ("outcome", "code"),
    ("bits_flipped", "i8"),
    ("channel_state", "code"),
)
_CODE_NAMES = {"outcome": OUTCOMES, "channel_state": CHANNEL_STATES}
# what the sender records per event, in this order (see _Simulation._sender)
_ROW_DTYPE = np.dtype(
    [
        ("seq", "i8"),
        ("attempt", "i8"),
        ("t_tx_start_s", "f8"),
        ("t_tx_end_s", "f8"),
        ("t_arrival_s", "f8"),
        ("delay_s", "f8"),
        ("wait_s", "f8"),
        ("elevation_deg", "f8"),
        ("outcome", "i1"),
        ("bits_flipped", "i8"),
        ("channel_state", "i1"),
    ]
)


class Trace:
    """Per-packet event trace, one row per event (a transmission attempt, a drop or a wait).

    Columns: ``seq``, ``attempt`` (retry count, 0 for the first transmission), ``reliable``,
    ``size_bytes``, ``t_enqueue_s``, ``t_tx_start_s``, ``t_tx_end_s``, ``t_arrival_s`` (NaN when
    nothing arrived), ``delay_s``, ``wait_s`` (time spent waiting for visibility),
    ``elevation_deg``, ``outcome`` (one of :data:`OUTCOMES`), ``bits_flipped`` and
    ``channel_state`` (``good``/``bad`` for Gilbert-Elliott, else ``-``).

    An attempt that failed and will be repeated by the ARQ has outcome ``retransmitted``;
    ``corrupted`` means bits were flipped (or ``integrity_check`` failed) and no repeat follows.
    """

    columns = tuple(name for name, _ in _TRACE_COLUMNS)

    def __init__(self, data: dict[str, Sequence[Any]]) -> None:
        """``data`` maps every column name to its values; ``outcome`` and ``channel_state``
        may be given as names or as indices into :data:`OUTCOMES` / :data:`CHANNEL_STATES`."""
        self._cols: dict[str, np.ndarray] = {}
        self._codes: dict[str, np.ndarray] = {}
        for name, kind in _TRACE_COLUMNS:
            values = data[name]
            if kind == "code":
                names = _CODE_NAMES[name]
                arr = np.asarray(values)
                if arr.dtype.kind not in "iu":  # names given: look them up
                    lookup = {v: i for i, v in enumerate(names)}
                    arr = np.array([lookup[v] for v in values], dtype=np.int8)
                self._codes[name] = arr.astype(np.int8).reshape(-1)
                self._cols[name] = np.array(names)[self._codes[name]]
            else:
                self._cols[name] = np.array(values, dtype=kind)

    def __len__(self) -> int:
        return len(self._cols["seq"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self._cols[name]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        return self.to_csv() == other.to_csv()

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside

    def rows(self) -> Iterator[dict[str, Any]]:
        """Rows as dicts of plain Python values."""
        lists = {k: v.tolist() for k, v in self._cols.items()}
        for i in range(len(self)):
            yield {k: lists[k][i] for k in self.columns}

    def counts(self) -> dict[str, int]:
        """Number of rows per outcome (every outcome present, zeros included)."""
        counts = np.bincount(self._codes["outcome"], minlength=len(OUTCOMES))
        return {o: int(c) for o, c in zip(OUTCOMES, counts, strict=True)}

    def to_csv(self, path: str | Path | None = None) -> str:
        """CSV text (written to ``path`` if given). Floats use repr: exact and deterministic."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.columns)
        lists = [self._cols[k].tolist() for k in self.columns]
        for row in zip(*lists, strict=True):
            w.writerow([_csv_cell(x) for x in row])
        text = buf.getvalue()
        if path is not None:
            Path(path).write_text(text)
        return text

    def digest(self) -> str:
        """SHA-256 of the CSV: equal digests mean byte-identical traces."""
        return hashlib.sha256(self.to_csv().encode()).hexdigest()


def _csv_cell(x: Any) -> Any:
    if isinstance(x, float):
        return "" if math.isnan(x) else repr(x)  # repr round-trips: byte-stable, lossless
    return x


_arrival_time = operator.itemgetter(0)


class LinkResult(NamedTuple):
    """What :meth:`Link.run` returns: deliveries in arrival order and the trace."""

    deliveries: list[Delivery]
    trace: Trace


# ---------------------------------------------------------------------------------------------
# The link
# ---------------------------------------------------------------------------------------------


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
            seed = np.random.SeedSequence(_int("seed", seed, lo=0))
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
                _real(f"enqueue_times_s[{i}]", t, lo=0.0) for i, t in enumerate(enqueue_times_s)
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
        self.windows = _Windows(cfg)
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
        loss = cfg.loss
        if loss.model == "bernoulli":
            self.loss_process: Any = Bernoulli(loss.p, self.rng_loss)
        elif loss.model == "gilbert-elliott":
            self.loss_process = GilbertElliott(
                loss.p, loss.r, loss.loss_good, loss.loss_bad, self.rng_loss
            )
        else:
            self.loss_process = _NoLoss()
        # one tuple per event, fields as in _ROW_DTYPE
        self.rows: list[tuple[Any, ...]] = []
        # deliveries in transmission order
        self.arrivals: list[Delivery] = []
        self.env = simpy.Environment()
        self.env.process(self._sender())

    def trace(self) -> Trace:
        # one C-level pass turns the event tuples into columns
        rec = np.array(self.rows, dtype=_ROW_DTYPE) if self.rows else np.zeros(0, _ROW_DTYPE)
        cols: dict[str, Any] = {name: rec[name] for name in _ROW_DTYPE.names or ()}
        # per-packet constants are looked up from seq here rather than stored per event
        seqs = rec["seq"]
        cols["reliable"] = np.array(self.reliable, dtype=bool)[seqs]
        cols["size_bytes"] = np.array([len(p) for p in self.packets], dtype=np.int64)[seqs]
        cols["t_enqueue_s"] = np.array(self.t_enq, dtype=np.float64)[seqs]
        return Trace(cols)

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
                    record((next_i, 0, nan, nan, nan, nan, 0.0, nan, _DROP_QUEUE, 0, 0))
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
                    record((seq, attempt, nan, nan, nan, nan, 0.0, nan, _DROP_VIS, 0, 0))
                    continue
                start, win_start, win_end = fit
                if start > t0:
                    wait = start - t0
                    record((seq, attempt, start, nan, nan, nan, wait, nan, _WAITED, 0, 0))
                    t0 = start
            t1 = t0 + tx_s  # exactly bits / rate
            last_start = t0

            # geometry at the end of transmission (when the last bit leaves)
            if cpass is not None:
                el = cpass.elevation_deg_scalar(t1 - 0.5 * (win_start + win_end))
                el = 0.0 if el < 0.0 else el
                if geometry:
                    d = hops * _slant_range_scalar_km(alt_km, el) / SPEED_OF_LIGHT_KM_S + proc_delay
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
                    state = 2 if bad_buf[k_loss] else 1
                k_loss += 1
            elif budget_per:
                assert ber_at is not None
                ber = ber_at(el)
                per = -math.expm1(bits * math.log1p(-ber)) if ber < 1.0 else 1.0
                if k_u == len(u_buf):
                    u_buf = rng_loss.random(_CHUNK).tolist()
                    k_u = 0
                lost = u_buf[k_u] < per
                k_u += 1
            else:  # bit errors: flip real bits, vectorised, at the budget's BER
                assert bit_errors and ber_at is not None
                lost = False
                flips = int(rng_bits.binomial(bits, min(1.0, ber_at(el))))
                if flips:
                    positions = rng_bits.choice(bits, size=flips, replace=False)
                    mask = np.zeros(bits, dtype=np.uint8)
                    mask[positions] = 1
                    flipped = np.frombuffer(payload, dtype=np.uint8) ^ np.packbits(mask)
                    payload = flipped.tobytes()

            if lost:
                t_arr = nan
                outcome = _LOST
                failed = True
            else:
                t_arr = t1 + d
                arrive(new_delivery(Delivery, (t_arr, seq, payload)))
                if flips and (integrity_check is None or not integrity_check(payload)):
                    outcome = _CORRUPTED
                    failed = True
                else:
                    outcome = _DELIVERED
                    failed = False
            if (
                failed
                and attempt < max_retries
                and (arq_all or (arq_tagged and reliable_flags[seq]))
            ):
                outcome = _RETX
                back = d if return_delay is None else return_delay
                heapq.heappush(retx, (t1 + d + back, seq, attempt + 1))
            record((seq, attempt, t0, t1, t_arr, d, wait, el, outcome, flips, state))
            yield timeout(t1 - now)
