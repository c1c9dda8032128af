"""The orbit side of a scenario: ``[orbit]`` and ``[ground_station]`` to a geometry track,
passes, the budget over a real pass, and the check that the loss applied agrees with the budget.

Used by :mod:`satlink.scenario`; kept apart so that the loader stays about TOML and types.

>>> from satlink.scenario import load_scenario
>>> s = load_scenario("leo-tle-pass")
>>> p = s.passes()[0]
>>> round(p.max_elevation_deg, 1), s.channel.visibility.mode
(76.4, 'passes')
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

from satlink.channel import GeometryTrack, LinkConfig
from satlink.config import ScenarioError
from satlink.linkbudget import BudgetConfig, evaluate_budget, slant_range_scalar_km
from satlink.modulation import message_error_rate
from satlink.orbit import GroundStation, OrbitConfig, Pass, find_passes, pass_track

__all__ = [
    "MISMATCH_FACTOR",
    "ORBIT_TABLES",
    "budget_over_orbit",
    "build_track",
    "loss_mismatch",
    "nominal_budget_per",
    "orbit_tables",
    "scenario_passes",
]

ORBIT_TABLES = ("orbit", "ground_station")
MISMATCH_FACTOR = 10.0  # warn when budget PER and applied loss differ by more than this


def orbit_tables(
    data: Mapping[str, Any], build: Callable[..., Any]
) -> tuple[OrbitConfig | None, GroundStation | None]:
    """Validate ``[orbit]`` and ``[ground_station]`` (both or neither) with the loader's
    ``build(cls, table, prefix)``."""
    has_orbit, has_station = "orbit" in data, "ground_station" in data
    if has_orbit != has_station:
        missing = "ground_station" if has_orbit else "orbit"
        raise ScenarioError(
            f"missing table [{missing}]: [orbit] (tle_line1, tle_line2, start_utc) and "
            "[ground_station] (latitude_deg, longitude_deg) go together"
        )
    if not has_orbit:
        return None, None
    return build(OrbitConfig, data["orbit"], "orbit"), build(
        GroundStation, data["ground_station"], "ground_station"
    )


@functools.lru_cache(maxsize=32)
def build_track(orbit: OrbitConfig, station: GroundStation) -> GeometryTrack:
    """Elevation and slant range over every pass within ``orbit.days`` of the start, sampled
    every ``orbit.step_s``, and the pass windows (cached: propagation costs tens of ms)."""
    sat = orbit.orbit()
    passes = find_passes(sat, station, orbit.start, orbit.days)
    look = pass_track(sat, station, orbit.start, passes, orbit.step_s)
    if len(look.t_s) < 2:
        raise ScenarioError(
            f"orbit: no pass above ground_station.min_elevation_deg = "
            f"{station.min_elevation_deg:g} within orbit.days = {orbit.days:g} of "
            f"orbit.start_utc = {orbit.start_utc}; allowed: more days or a lower mask"
        )
    return GeometryTrack(
        tuple(look.t_s.tolist()),
        tuple(look.elevation_deg.tolist()),
        tuple(look.slant_range_km.tolist()),
        tuple((p.aos_s, p.los_s) for p in passes),
    )


def scenario_passes(
    name: str,
    orbit: OrbitConfig | None,
    station: GroundStation | None,
    days: float | None = None,
) -> list[Pass]:
    """The passes of a scenario's orbit over its station."""
    if orbit is None or station is None:
        raise ScenarioError(
            f"scenario {name!r} has no [orbit] and [ground_station]; passes need a TLE "
            "(orbit.tle_line1, orbit.tle_line2, orbit.start_utc) and a station"
        )
    return find_passes(orbit.orbit(), station, orbit.start, orbit.days if days is None else days)


def budget_over_orbit(
    budget: BudgetConfig, track: GeometryTrack, step_s: float | None = None
) -> list[dict[str, Any]]:
    """The budget every ``step_s`` (default the budget's) over the first pass of the track,
    at the propagated elevation and slant range; ``t_s`` from the scenario's start."""
    aos, los = track.windows_s[0]
    dt = budget.step_s if step_s is None else step_s
    n = max(1, math.ceil((los - aos) / dt))
    out = []
    for i in range(n + 1):
        t = min(los, aos + i * dt)
        el, d_km = track.at(t)
        out.append(evaluate_budget(budget, elevation_deg=max(0.0, el), slant_range_km=d_km, t_s=t))
    return out


def nominal_budget_per(channel: LinkConfig, budget: BudgetConfig) -> float:
    """The budget's PER for a wire message at the channel's nominal geometry (fixed elevation,
    a circular pass's or a track's mean over its samples), fades included."""
    ebn0_at = budget.ebn0_function()
    fade = channel.loss.fade_margin_db
    bits = budget.packet_bits
    if channel.track is not None:
        tr = channel.track
        pers = [
            message_error_rate(ebn0_at(e, d) - fade, bits, budget.modulation)
            for e, d in zip(tr.elevation_deg, tr.slant_range_km, strict=True)
        ]
        return sum(pers) / len(pers)
    el = channel.delay.elevation_deg
    cp = channel.delay.circular_pass()
    if cp is not None:
        el = 0.5 * (cp.max_elevation_deg + cp.min_elevation_deg)
    d_km = slant_range_scalar_km(budget.altitude_km, el)
    return message_error_rate(ebn0_at(el, d_km) - fade, bits, budget.modulation)


def loss_mismatch(name: str, channel: LinkConfig, budget: BudgetConfig | None) -> str | None:
    """A one-line warning when a scenario has a budget but applies a loss (Bernoulli or
    Gilbert-Elliott) more than :data:`MISMATCH_FACTOR` times above or below the budget's PER;
    None when they agree or the budget drives the loss."""
    if budget is None or channel.loss.model not in ("bernoulli", "gilbert-elliott"):
        return None
    applied = channel.loss.stationary_loss()
    per = nominal_budget_per(channel, budget)
    lo, hi = sorted((max(applied, 1e-12), max(per, 1e-12)))
    if hi / lo <= MISMATCH_FACTOR:
        return None
    return (
        f"scenario {name!r}: the link budget gives PER {per:.3g} per {budget.packet_bits}-bit "
        f"message but channel.loss ({channel.loss.model}) applies {applied:.3g}, "
        f"{hi / lo:.0f}x {'more' if applied > per else 'less'}; the loss does not follow the "
        "budget (set channel.loss.model = 'budget-per' to let it)"
    )
