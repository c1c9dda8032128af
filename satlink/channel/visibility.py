"""Visibility windows: when a message may start so that it ends inside one window.

A message must start and finish inside one window (``always``, explicit ``windows``,
``periodic`` passes, or the ``passes`` of a propagated orbit); the link asks :class:`Windows`
for the earliest such start. Scheduling within a pass narrows each window: a start offset
from acquisition (``start_offset_s``) and a policy that waits until the budget's margin is at
least ``min_margin_db``. With a circular pass the geometry stays tied to the pass (culmination
at its middle) however the window is narrowed.

>>> from satlink.channel.config import LinkConfig, VisibilityConfig
>>> vis = VisibilityConfig(mode="windows", windows_s=((0.0, 10.0), (100.0, 200.0)))
>>> Windows(LinkConfig(rate_bps=1000.0, visibility=vis)).fit(9.5, 1.0)
(100.0, 100.0, 200.0)
"""

from __future__ import annotations

import bisect
import math

from satlink.channel.config import LinkConfig
from satlink.config import ChannelConfigError
from satlink.linkbudget import CircularPass, slant_range_scalar_km

__all__ = ["Windows", "margin_elevation_deg"]


def margin_elevation_deg(cfg: LinkConfig, min_margin_db: float) -> float | None:
    """Lowest elevation (circular-pass or fixed geometry) at which the budget margin reaches
    ``min_margin_db``; None when it never does (bisection: margin rises with elevation)."""
    assert cfg.budget is not None
    ebn0_at = cfg.budget.ebn0_function()
    req = cfg.budget.required_ebn0()
    alt = cfg.delay.altitude_km

    def margin(el: float) -> float:
        return ebn0_at(el, slant_range_scalar_km(alt, el)) - req - cfg.loss.fade_margin_db

    lo, hi = 0.0, 90.0
    if cfg.delay.elevation_mode == "pass":
        hi = cfg.delay.max_elevation_deg
    if margin(hi) < min_margin_db:
        return None
    if margin(lo) >= min_margin_db:
        return lo
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if margin(mid) >= min_margin_db:
            hi = mid
        else:
            lo = mid
    return hi


class Windows:
    """Finds the earliest time a message of a given duration fits inside a window.

    >>> from satlink.channel.config import VisibilityConfig
    >>> vis = VisibilityConfig(mode="periodic", duration_s=600.0, period_s=5700.0)
    >>> w = Windows(LinkConfig(visibility=vis))
    >>> w.fit(100.0, 1.2)  # fits in the first window: starts at once
    (100.0, 0.0, 600.0)
    >>> w.fit(599.5, 1.2)  # would end after the window closes: waits for the next one
    (5700.0, 5700.0, 6300.0)
    """

    def __init__(self, cfg: LinkConfig) -> None:
        v = cfg.visibility
        self.mode = "windows" if v.mode == "passes" else v.mode
        self.first_start_s = float(v.first_start_s)
        self.period_s = float(v.period_s) if v.period_s is not None else math.inf
        offset = float(v.start_offset_s)
        cpass = cfg.delay.circular_pass()
        self.pass_duration_s = cpass.duration_s if cpass is not None else math.nan
        if v.mode == "passes":
            assert cfg.track is not None  # checked by LinkConfig
            windows = [(float(a), float(b)) for a, b in cfg.track.windows_s]
        else:
            windows = [(float(a), float(b)) for a, b in v.windows_s]
        # periodic windows, relative to the start of each period: [open_s, close_s]
        self.open_s = offset
        if v.mode == "periodic":
            if cpass is not None:
                length = v.duration_s if v.duration_s is not None else self.pass_duration_s
                self.close_s = min(self.pass_duration_s, offset + length)
            else:
                self.close_s = offset + float(v.duration_s or 0.0)
        else:
            self.close_s = math.nan
            windows = [(a + offset, b) for a, b in windows if a + offset < b]
        if v.min_margin_db is not None:
            windows = self._apply_margin(cfg, cpass, windows, float(v.min_margin_db))
        if self.mode != "periodic" and self.mode != "always" and not windows:
            raise ChannelConfigError(
                "no visibility window is left after channel.visibility.start_offset_s / "
                "min_margin_db; allowed: a smaller offset or margin"
            )
        if self.mode == "periodic" and self.close_s <= self.open_s:
            raise ChannelConfigError(
                f"channel.visibility.start_offset_s = {offset:g} leaves no time in the pass or "
                f"window; allowed: below {self.close_s:g} s"
            )
        self.starts_s = [a for a, _ in windows]
        self.ends_s = [b for _, b in windows]

    def _apply_margin(
        self,
        cfg: LinkConfig,
        cpass: CircularPass | None,
        windows: list[tuple[float, float]],
        min_margin_db: float,
    ) -> list[tuple[float, float]]:
        if cfg.budget is None:
            raise ChannelConfigError(
                "channel.visibility.min_margin_db needs a link budget; add a [budget] section"
            )
        if cfg.delay.elevation_mode == "orbit":
            assert cfg.track is not None
            ebn0_at = cfg.budget.ebn0_function()
            req = cfg.budget.required_ebn0() + cfg.loss.fade_margin_db
            tr = cfg.track
            ok = [
                ebn0_at(el, d) - req >= min_margin_db
                for el, d in zip(tr.elevation_deg, tr.slant_range_km, strict=True)
            ]
            out = []
            for a, b in windows:
                i, j = bisect.bisect_left(tr.times_s, a), bisect.bisect_right(tr.times_s, b)
                good = [tr.times_s[k] for k in range(i, j) if ok[k]]
                if len(good) >= 2:
                    out.append((max(a, good[0]), min(b, good[-1])))
            return out
        el = margin_elevation_deg(cfg, min_margin_db)
        if el is None:
            raise ChannelConfigError(
                f"channel.visibility.min_margin_db = {min_margin_db:g}: the budget never reaches "
                "that margin on this geometry; allowed: a lower margin"
            )
        if cpass is not None:  # the part of the pass above that elevation, around culmination
            if el > cpass.min_elevation_deg:
                inner = CircularPass(cpass.altitude_km, cpass.max_elevation_deg, el).duration_s
                mid = 0.5 * self.pass_duration_s
                self.open_s = max(self.open_s, mid - 0.5 * inner)
                self.close_s = min(self.close_s, mid + 0.5 * inner)
            return windows
        if el > cfg.delay.elevation_deg:  # fixed geometry below the margin: never usable
            raise ChannelConfigError(
                f"channel.visibility.min_margin_db = {min_margin_db:g}: the margin at "
                f"channel.delay.elevation_deg = {cfg.delay.elevation_deg:g} is lower; allowed: "
                "a lower margin"
            )
        return windows

    def longest_s(self) -> float:
        """Duration of the longest window (infinite when always visible)."""
        if self.mode == "always":
            return math.inf
        if self.mode == "periodic":
            return self.close_s - self.open_s
        return max(e - s for s, e in zip(self.starts_s, self.ends_s, strict=True))

    def pass_start_s(self, t_s: float) -> float:
        """Start of the period (the pass's acquisition) that ``t_s`` falls in."""
        k = max(0, math.floor((t_s - self.first_start_s) / self.period_s))
        return self.first_start_s + k * self.period_s

    def fit(self, t_s: float, duration_s: float) -> tuple[float, float, float] | None:
        """(start, window_start, window_end) in seconds of the earliest start at or after
        ``t_s`` that ends inside a window, or None when no window can hold the message."""
        if self.mode == "periodic":
            k = max(0, math.floor((t_s - self.first_start_s - self.open_s) / self.period_s))
            ws = self.first_start_s + k * self.period_s + self.open_s
            length = self.close_s - self.open_s
            # too late in this window: the next one (periodic windows never run out)
            if t_s > ws and t_s + duration_s > ws + length:
                ws += self.period_s
            start = t_s if t_s > ws else ws
            return start, ws, ws + length
        # explicit windows: the first window that ends after t_s and can hold the message
        i = bisect.bisect_right(self.ends_s, t_s)
        while i < len(self.starts_s):
            ws, we = self.starts_s[i], self.ends_s[i]
            start = t_s if t_s > ws else ws
            if start + duration_s <= we:
                return start, ws, we
            i += 1
        return None

    def until(self, horizon_s: float) -> list[tuple[float, float]]:
        """The windows that open before ``horizon_s`` (for plots)."""
        if self.mode == "always":
            return []
        if self.mode == "periodic":
            out = []
            k = 0
            while True:
                ws = self.first_start_s + k * self.period_s + self.open_s
                if ws > horizon_s or k > 10_000:
                    return out
                out.append((ws, ws + self.close_s - self.open_s))
                k += 1
        return [(a, b) for a, b in zip(self.starts_s, self.ends_s, strict=True) if a <= horizon_s]
