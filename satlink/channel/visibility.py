"""Visibility windows: when a message may start so that it ends inside one window.

A message must start and finish inside one window (``always``, explicit ``windows``, or
``periodic`` passes); the link asks :class:`Windows` for the earliest such start.

>>> from satlink.channel.config import LinkConfig, VisibilityConfig
>>> vis = VisibilityConfig(mode="windows", windows_s=((0.0, 10.0), (100.0, 200.0)))
>>> Windows(LinkConfig(rate_bps=1000.0, visibility=vis)).fit(9.5, 1.0)
(100.0, 100.0, 200.0)
"""

from __future__ import annotations

import bisect
import math

from satlink.channel.config import LinkConfig

__all__ = ["Windows"]


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
        self.mode = v.mode
        self.starts_s = [float(w[0]) for w in v.windows_s]
        self.ends_s = [float(w[1]) for w in v.windows_s]
        self.first_start_s = float(v.first_start_s)
        self.period_s = float(v.period_s) if v.period_s is not None else math.inf
        self.duration_s = cfg.window_duration_s() or 0.0

    def longest_s(self) -> float:
        """Duration of the longest window (infinite when always visible)."""
        if self.mode == "always":
            return math.inf
        if self.mode == "periodic":
            return self.duration_s
        return max(e - s for s, e in zip(self.starts_s, self.ends_s, strict=True))

    def fit(self, t_s: float, duration_s: float) -> tuple[float, float, float] | None:
        """(start, window_start, window_end) in seconds of the earliest start at or after
        ``t_s`` that ends inside a window, or None when no window can hold the message."""
        if self.mode == "periodic":
            k = max(0, math.floor((t_s - self.first_start_s) / self.period_s))
            ws = self.first_start_s + k * self.period_s
            # too late in this window: the next one (periodic windows never run out)
            if t_s > ws and t_s + duration_s > ws + self.duration_s:
                ws += self.period_s
            start = t_s if t_s > ws else ws
            return start, ws, ws + self.duration_s
        # explicit windows: the first window that ends after t_s and can hold the message
        i = bisect.bisect_right(self.ends_s, t_s)
        while i < len(self.starts_s):
            ws, we = self.starts_s[i], self.ends_s[i]
            start = t_s if t_s > ws else ws
            if start + duration_s <= we:
                return start, ws, we
            i += 1
        return None
