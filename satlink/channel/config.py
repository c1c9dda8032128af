"""The channel's configuration: frozen dataclasses that check every field when built.

Each error is a :class:`~satlink.config.ChannelConfigError` naming the field as it is spelled in a
scenario file (``channel.loss.p``) and the allowed range, so the scenario loader can pass it on.

>>> from satlink.channel.config import LinkConfig, LossConfig
>>> cfg = LinkConfig(rate_bps=2400.0, loss=LossConfig("bernoulli", p=0.25))
>>> cfg.loss.stationary_loss(), cfg.window_duration_s()
(0.25, None)
>>> LossConfig("burst")
Traceback (most recent call last):
...
satlink.config.ChannelConfigError: channel.loss.model = 'burst': allowed values are 'none', \
'bernoulli', 'gilbert-elliott', 'budget-per', 'bit-errors'
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from satlink.config import ChannelConfigError, check_choice, check_int, check_real

# BudgetConfig and CircularPass are needed at run time: the scenario loader resolves the
# dataclasses' type hints (typing.get_type_hints) in this module's namespace
from satlink.linkbudget import (
    SPEED_OF_LIGHT_KM_S,
    BudgetConfig,
    CircularPass,
    slant_range_scalar_km,
)

__all__ = [
    "ARQ_MODES",
    "DELAY_MODES",
    "ELEVATION_MODES",
    "LOSS_MODELS",
    "OUTSIDE_MODES",
    "RETURN_MODES",
    "VISIBILITY_MODES",
    "ArqConfig",
    "DelayConfig",
    "GeometryTrack",
    "LinkConfig",
    "LossConfig",
    "ReturnLinkConfig",
    "VisibilityConfig",
    "channel_choice",
    "channel_int",
    "channel_real",
    "gilbert_elliott_stationary_loss",
]

DELAY_MODES = ("fixed", "geometry")
ELEVATION_MODES = ("fixed", "pass", "orbit")
VISIBILITY_MODES = ("always", "windows", "periodic", "passes")
RETURN_MODES = ("ideal", "messages")
OUTSIDE_MODES = ("wait", "drop")
LOSS_MODELS = ("none", "bernoulli", "gilbert-elliott", "budget-per", "bit-errors")
BUDGET_LOSS_MODELS = ("budget-per", "bit-errors")
ARQ_MODES = ("none", "selective-repeat", "reliable-first-stage")


# The checks of satlink.config, bound to the channel's error class; the link uses them too for
# the arguments of a run (seed, enqueue times).
def channel_real(name: str, value: Any, **kw: Any) -> float:
    """``check_real`` raising :class:`ChannelConfigError`.

    >>> channel_real("channel.rate_bps", 2400)
    2400.0
    """
    return check_real(name, value, error=ChannelConfigError, **kw)


def channel_int(name: str, value: Any, **kw: Any) -> int:
    """``check_int`` raising :class:`ChannelConfigError`."""
    return check_int(name, value, error=ChannelConfigError, **kw)


def channel_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """``check_choice`` raising :class:`ChannelConfigError`."""
    return check_choice(name, value, choices, error=ChannelConfigError)


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
    service_latency_min_s: float | None = None
    service_latency_max_s: float | None = None

    def __post_init__(self) -> None:
        channel_choice("channel.delay.mode", self.mode, DELAY_MODES)
        lo_s, hi_s = self.service_latency_min_s, self.service_latency_max_s
        if (lo_s is None) != (hi_s is None):
            raise ChannelConfigError(
                "channel.delay.service_latency_min_s and service_latency_max_s go together; "
                "allowed: both (end-to-end latency uniform between them) or neither"
            )
        if lo_s is not None and hi_s is not None:
            channel_real("channel.delay.service_latency_min_s", lo_s, lo=0.0, hi=86_400.0)
            channel_real("channel.delay.service_latency_max_s", hi_s, lo=lo_s, hi=86_400.0)
        channel_real("channel.delay.delay_s", self.delay_s, lo=0.0, hi=86_400.0)
        channel_real("channel.delay.jitter_s", self.jitter_s, lo=0.0, hi=86_400.0)
        channel_real(
            "channel.delay.processing_delay_s", self.processing_delay_s, lo=0.0, hi=86_400.0
        )
        channel_real("channel.delay.altitude_km", self.altitude_km, lo=100.0, hi=400_000.0)
        channel_real("channel.delay.elevation_deg", self.elevation_deg, lo=0.0, hi=90.0)
        channel_choice("channel.delay.elevation_mode", self.elevation_mode, ELEVATION_MODES)
        channel_real("channel.delay.max_elevation_deg", self.max_elevation_deg, lo=0.0, hi=90.0)
        channel_real("channel.delay.min_elevation_deg", self.min_elevation_deg, lo=0.0, hi=90.0)
        if self.min_elevation_deg > self.max_elevation_deg:
            raise ChannelConfigError(
                f"channel.delay.min_elevation_deg = {self.min_elevation_deg!r} is above "
                f"channel.delay.max_elevation_deg = {self.max_elevation_deg!r}; allowed: "
                "0 <= min_elevation_deg <= max_elevation_deg <= 90"
            )
        channel_int("channel.delay.hops", self.hops, lo=1, hi=16)

    def read_fields(self) -> tuple[str, ...]:
        """The fields these modes read: ``delay_s`` only in ``fixed`` mode, ``hops`` only in
        ``geometry``; ``elevation_deg`` only at a fixed elevation, the pass's elevations only
        on a pass, ``altitude_km`` unless an orbit gives the geometry. Jitter, processing delay
        and service latency apply in every mode; the elevation also reaches the trace and the
        link budget, so it is read even where the delay is fixed.

        >>> DelayConfig("geometry", elevation_mode="pass").read_fields()  # doctest: +ELLIPSIS
        ('mode', 'elevation_mode', 'jitter_s', ..., 'hops', 'max_elevation_deg', \
'min_elevation_deg', 'altitude_km')
        """
        read = ["mode", "elevation_mode", "jitter_s", "processing_delay_s"]
        read += ["service_latency_min_s", "service_latency_max_s"]
        read.append("delay_s" if self.mode == "fixed" else "hops")
        if self.elevation_mode == "fixed":
            read.append("elevation_deg")
        elif self.elevation_mode == "pass":
            read += ["max_elevation_deg", "min_elevation_deg"]
        if self.elevation_mode != "orbit":
            read.append("altitude_km")
        return tuple(read)

    def circular_pass(self) -> CircularPass | None:
        """The circular-pass geometry when ``elevation_mode == "pass"``, else None."""
        if self.elevation_mode != "pass":
            return None
        return CircularPass(self.altitude_km, self.max_elevation_deg, self.min_elevation_deg)

    def nominal_delay_s(self, elevation_deg: float | None = None) -> float:
        """Delay without jitter at ``elevation_deg`` (default: the fixed elevation)."""
        if self.mode == "fixed":
            return self.delay_s + self.processing_delay_s
        el = self.elevation_deg if elevation_deg is None else elevation_deg
        d_km = slant_range_scalar_km(self.altitude_km, el)
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
    start_offset_s: float = 0.0
    min_margin_db: float | None = None

    def read_fields(self) -> tuple[str, ...]:
        """The fields this mode reads (``always`` reads no window settings at all).

        >>> VisibilityConfig("passes").read_fields()
        ('mode', 'outside', 'start_offset_s', 'min_margin_db')
        """
        if self.mode == "always":
            return ("mode",)
        own = {"windows": ("windows_s",), "periodic": ("first_start_s", "duration_s", "period_s")}
        return ("mode", *own.get(self.mode, ()), "outside", "start_offset_s", "min_margin_db")

    def __post_init__(self) -> None:
        channel_choice("channel.visibility.mode", self.mode, VISIBILITY_MODES)
        channel_real("channel.visibility.start_offset_s", self.start_offset_s, lo=0.0)
        if self.min_margin_db is not None:
            channel_real("channel.visibility.min_margin_db", self.min_margin_db, lo=-50, hi=50)
        channel_choice("channel.visibility.outside", self.outside, OUTSIDE_MODES)
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
                start = channel_real(f"{name}[0]", w[0], lo=0.0)
                end = channel_real(f"{name}[1]", w[1], lo=start, lo_open=True)
                if start < prev_end:
                    raise ChannelConfigError(
                        f"{name} = {list(w)!r} starts before the previous window ends "
                        f"({prev_end:g}); allowed: sorted, non-overlapping windows"
                    )
                prev_end = end
        channel_real("channel.visibility.first_start_s", self.first_start_s, lo=0.0)
        if self.mode == "periodic":
            if self.period_s is None:
                raise ChannelConfigError(
                    "channel.visibility.period_s is missing; mode = 'periodic' needs period_s > 0"
                )
            channel_real("channel.visibility.period_s", self.period_s, lo=0.0, lo_open=True)
        if self.duration_s is not None:
            hi = self.period_s if self.mode == "periodic" and self.period_s is not None else None
            channel_real(
                "channel.visibility.duration_s", self.duration_s, lo=0.0, lo_open=True, hi=hi
            )


def gilbert_elliott_stationary_loss(p: float, r: float, loss_good: float, loss_bad: float) -> float:
    """Long-run loss of a Gilbert-Elliott channel: (r*loss_good + p*loss_bad) / (p + r).

    >>> gilbert_elliott_stationary_loss(0.1, 0.4, 0.0, 1.0)
    0.2
    """
    if p + r == 0.0:
        return float(loss_good)  # the chain never leaves the good state it starts in
    return (r * loss_good + p * loss_bad) / (p + r)


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
    step_s: float | None = None
    fade_margin_db: float = 0.0
    shadow_db: float = 0.0
    service_loss_p: float = 0.0

    def __post_init__(self) -> None:
        channel_choice("channel.loss.model", self.model, LOSS_MODELS)
        for name in ("p", "r", "loss_good", "loss_bad", "service_loss_p"):
            channel_real(f"channel.loss.{name}", getattr(self, name), lo=0.0, hi=1.0)
        if self.step_s is not None:
            channel_real("channel.loss.step_s", self.step_s, lo=0.0, lo_open=True)
        channel_real("channel.loss.fade_margin_db", self.fade_margin_db, lo=0.0, hi=100.0)
        channel_real("channel.loss.shadow_db", self.shadow_db, lo=0.0, hi=100.0)

    @property
    def has_chain(self) -> bool:
        """Whether a two-state Markov chain runs: Gilbert-Elliott loss, or the shadowing of a
        budget model (``shadow_db`` and ``fade_margin_db`` only act on the budget models, so
        a ``--set channel.loss.model=bernoulli`` on a preset with shadowing just works)."""
        return self.model == "gilbert-elliott" or (
            self.shadow_db > 0.0 and self.model in BUDGET_LOSS_MODELS
        )

    def read_fields(self) -> tuple[str, ...]:
        """The fields this model reads; the others wait for another model (a preset may carry
        them for a ``--set channel.loss.model=...``).

        >>> LossConfig("budget-per").read_fields()
        ('model', 'service_loss_p', 'fade_margin_db', 'shadow_db')
        """
        read = ["model", "service_loss_p"]
        if self.model == "bernoulli":
            read.append("p")
        if self.model in BUDGET_LOSS_MODELS:
            read += ["fade_margin_db", "shadow_db"]
        if self.has_chain:
            read += ["p", "r", "step_s"]
        if self.model == "gilbert-elliott":
            read += ["loss_good", "loss_bad"]
        return tuple(read)

    def stationary_loss(self) -> float:
        """Long-run loss probability per transmission, service loss included (budget models:
        not defined here, NaN: it depends on the geometry)."""
        if self.model == "none":
            rf = 0.0
        elif self.model == "bernoulli":
            rf = float(self.p)
        elif self.model == "gilbert-elliott":
            rf = gilbert_elliott_stationary_loss(self.p, self.r, self.loss_good, self.loss_bad)
        else:
            return math.nan
        return 1.0 - (1.0 - rf) * (1.0 - self.service_loss_p)


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
    window_messages: int | None = None

    def __post_init__(self) -> None:
        channel_choice("channel.arq.mode", self.mode, ARQ_MODES)
        if self.window_messages is not None:
            channel_int("channel.arq.window_messages", self.window_messages, lo=1)
        if self.return_delay_s is not None:
            channel_real("channel.arq.return_delay_s", self.return_delay_s, lo=0.0, hi=86_400.0)
        channel_int("channel.arq.max_retries", self.max_retries, lo=0, hi=1000)


@dataclass(frozen=True)
class ReturnLinkConfig:
    """The return path of the ARQ. ``ideal``: each acknowledgement reaches the sender one
    return delay after the receiver learns of the attempt, free and never lost (the old model).
    ``messages``: acknowledgements travel as messages of ``message_bytes`` on a return link of
    its own: ``rate_bps``, at most one message per ``min_interval_s``, one-way ``delay_s``
    (default: the forward delay of the attempt reported first), loss ``loss_p`` per message;
    one message carries up to ``entries_per_message`` ACK/NAK entries, oldest first, and a lost
    one's entries go again in the next. The receiver learns of an attempt when its copy
    arrives, or when it would have arrived (a lost one: the gap is seen then).
    """

    mode: str = "ideal"
    rate_bps: float = 2400.0
    min_interval_s: float = 0.0
    delay_s: float | None = None
    loss_p: float = 0.0
    message_bytes: int = 78
    entries_per_message: int = 32

    def __post_init__(self) -> None:
        channel_choice("channel.return_link.mode", self.mode, RETURN_MODES)
        channel_real("channel.return_link.rate_bps", self.rate_bps, lo=0.0, lo_open=True)
        channel_real("channel.return_link.min_interval_s", self.min_interval_s, lo=0.0, hi=86_400.0)
        if self.delay_s is not None:
            channel_real("channel.return_link.delay_s", self.delay_s, lo=0.0, hi=86_400.0)
        # below 1, so that every report gets through eventually and a run always ends
        channel_real("channel.return_link.loss_p", self.loss_p, lo=0.0, hi=0.99)
        channel_int("channel.return_link.message_bytes", self.message_bytes, lo=1, hi=65_535)
        channel_int(
            "channel.return_link.entries_per_message", self.entries_per_message, lo=1, hi=65_535
        )


@dataclass(frozen=True, eq=False)
class GeometryTrack:
    """Elevation and slant range sampled over time (from a propagated orbit), and the pass
    windows; the link interpolates linearly between samples. Built by the scenario from
    ``[orbit]`` and ``[ground_station]`` (:mod:`satlink.orbit`); times in seconds from the start.

    >>> tr = GeometryTrack((0.0, 10.0), (10.0, 30.0), (1800.0, 1000.0), ((0.0, 10.0),))
    >>> tr.at(5.0)
    (20.0, 1400.0)
    """

    times_s: tuple[float, ...]
    elevation_deg: tuple[float, ...]
    slant_range_km: tuple[float, ...]
    windows_s: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        n = len(self.times_s)
        if n < 2 or len(self.elevation_deg) != n or len(self.slant_range_km) != n:
            raise ChannelConfigError(
                "channel track: times_s, elevation_deg and slant_range_km need the same length "
                f"(at least 2); got {n}, {len(self.elevation_deg)}, {len(self.slant_range_km)}"
            )
        if not self.windows_s:
            raise ChannelConfigError(
                "channel track: no pass above the elevation mask in the interval; allowed: a later "
                "orbit.start_utc, more orbit.days or a lower ground_station.min_elevation_deg"
            )

    def at(self, t_s: float) -> tuple[float, float]:
        """(elevation_deg, slant_range_km) at ``t_s``, linear between samples."""
        ts = self.times_s
        i = bisect.bisect_right(ts, t_s)
        if i <= 0:
            return self.elevation_deg[0], self.slant_range_km[0]
        if i >= len(ts):
            return self.elevation_deg[-1], self.slant_range_km[-1]
        t0, t1 = ts[i - 1], ts[i]
        w = (t_s - t0) / (t1 - t0) if t1 > t0 else 0.0
        el = self.elevation_deg[i - 1] + w * (self.elevation_deg[i] - self.elevation_deg[i - 1])
        d = self.slant_range_km[i - 1] + w * (self.slant_range_km[i] - self.slant_range_km[i - 1])
        return el, d


@dataclass(frozen=True)
class LinkConfig:
    """Everything the link needs. ``budget`` is required by the ``budget-per`` and
    ``bit-errors`` loss models.

    >>> LinkConfig(rate_bps=-1.0)
    Traceback (most recent call last):
    ...
    satlink.config.ChannelConfigError: channel.rate_bps = -1.0 is out of range; allowed: > 0
    """

    rate_bps: float = 2400.0
    queue_limit_packets: int | None = None
    min_interval_s: float = 0.0
    max_message_bytes: int | None = None
    delay: DelayConfig = field(default_factory=DelayConfig)
    visibility: VisibilityConfig = field(default_factory=VisibilityConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    arq: ArqConfig = field(default_factory=ArqConfig)
    return_link: ReturnLinkConfig = field(default_factory=ReturnLinkConfig)
    budget: BudgetConfig | None = None
    track: GeometryTrack | None = None
    terminal: str | None = None  # a terminal class (satlink.channel.terminals), as named

    def __post_init__(self) -> None:
        channel_real("channel.rate_bps", self.rate_bps, lo=0.0, lo_open=True)
        if self.queue_limit_packets is not None:
            channel_int("channel.queue_limit_packets", self.queue_limit_packets, lo=1)
        channel_real("channel.min_interval_s", self.min_interval_s, lo=0.0, hi=86_400.0)
        if self.max_message_bytes is not None:
            channel_int("channel.max_message_bytes", self.max_message_bytes, lo=1)
        for name, typ in (
            ("delay", DelayConfig),
            ("visibility", VisibilityConfig),
            ("loss", LossConfig),
            ("arq", ArqConfig),
            ("return_link", ReturnLinkConfig),
        ):
            if not isinstance(getattr(self, name), typ):
                raise ChannelConfigError(f"channel.{name}: expected a {typ.__name__}")
        if self.loss.model in ("budget-per", "bit-errors") and self.budget is None:
            raise ChannelConfigError(
                f"channel.loss.model = {self.loss.model!r} needs a link budget; add a [budget] "
                "section (freq_hz, eirp_dbw, gt_dbk) or choose another model"
            )
        uses_orbit = self.delay.elevation_mode == "orbit" or self.visibility.mode == "passes"
        if uses_orbit and self.track is None:
            raise ChannelConfigError(
                "channel.delay.elevation_mode = 'orbit' and channel.visibility.mode = 'passes' "
                "need an orbit: add [orbit] (tle_line1, tle_line2, start_utc) and "
                "[ground_station] (latitude_deg, longitude_deg)"
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

    def unread_keys(self) -> tuple[str, ...]:
        """Dotted keys of ``[channel.delay]``, ``[channel.visibility]``, ``[channel.loss]``,
        ``[channel.arq]`` and ``[channel.return_link]`` that this configuration never reads (a
        preset may carry them for another mode).

        >>> LinkConfig(arq=ArqConfig("none")).unread_keys()[-2:]
        ('channel.return_link.message_bytes', 'channel.return_link.entries_per_message')
        """
        arq_on = self.arq.mode != "none"
        messages = arq_on and self.return_link.mode == "messages"
        arq_read = ("mode", "return_delay_s", "max_retries") if arq_on else ("mode",)
        # None: every field is read
        read = {
            "delay": self.delay.read_fields(),
            "visibility": self.visibility.read_fields(),
            "loss": self.loss.read_fields(),
            "arq": (*arq_read, "window_messages") if messages else arq_read,
            "return_link": None if messages else ("mode",) if arq_on else (),
        }
        return tuple(
            f"channel.{table}.{f.name}"
            for table, names in read.items()
            for f in fields(getattr(self, table))
            if names is not None and f.name not in names
        )

    def stationary_loss(self) -> float:
        """Long-run loss per transmission: :meth:`LossConfig.stationary_loss`, and for the
        budget models at a fixed geometry the budget's PER averaged over the shadowing chain
        (clear and shadowed, in their stationary shares); NaN where the geometry moves.

        >>> from satlink.linkbudget import BudgetConfig
        >>> b = BudgetConfig(freq_hz=1.6e9, eirp_dbw=30.0, gt_dbk=0.0, rate_bps=2400.0)
        >>> cfg = LinkConfig(loss=LossConfig("budget-per", p=0.1, r=0.3, shadow_db=40.0), budget=b)
        >>> round(cfg.stationary_loss(), 3)
        0.25
        """
        lc = self.loss
        if lc.model not in BUDGET_LOSS_MODELS:
            return lc.stationary_loss()
        if self.budget is None or self.delay.elevation_mode != "fixed":
            return math.nan
        from satlink.modulation import message_error_rate  # no cycle: a leaf module

        b = self.budget
        el = self.delay.elevation_deg
        ebn0 = b.ebn0_function()(el, slant_range_scalar_km(b.altitude_km, el)) - lc.fade_margin_db
        clear = message_error_rate(ebn0, b.packet_bits, b.modulation)
        rf = clear
        if lc.has_chain:
            shadowed = message_error_rate(ebn0 - lc.shadow_db, b.packet_bits, b.modulation)
            pi = lc.p / (lc.p + lc.r) if lc.p + lc.r > 0 else 0.0
            rf = (1.0 - pi) * clear + pi * shadowed
        return 1.0 - (1.0 - rf) * (1.0 - lc.service_loss_p)

    def pass_duration_s(self) -> float:
        cp = self.delay.circular_pass()
        return cp.duration_s if cp is not None else math.nan

    def window_duration_s(self) -> float | None:
        """Duration of periodic windows (given or from the pass); None for other modes."""
        v = self.visibility
        if v.mode != "periodic":
            return None
        return v.duration_s if v.duration_s is not None else self.pass_duration_s()
