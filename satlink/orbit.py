"""Orbits from two-line elements: passes, elevation, slant range and delay over time, offline.

SGP4 propagation through skyfield, with skyfield's built-in timescale (leap seconds and
Delta T tables shipped with the package): nothing is downloaded, ever. Times are UTC
``datetime`` objects (``aos_utc``) or seconds from a scenario's start (``t_s``).

>>> from datetime import datetime, timezone
>>> orbit = Orbit(
...     "1 44714U 19074B   25117.42924319 -.00001157  00000+0 -58773-4 0  9990",
...     "2 44714  53.0517 166.3609 0001116  99.1558 260.9557 15.06400606301084",
...     name="STARLINK-1008",
... )
>>> station = GroundStation(latitude_deg=39.9042, longitude_deg=116.4074, altitude_m=50.0)
>>> start = datetime(2025, 4, 27, 15, 0, tzinfo=timezone.utc)
>>> passes = find_passes(orbit, station, start, days=1.0)
>>> first = passes[0]
>>> first.aos_utc.strftime("%H:%M"), round(first.max_elevation_deg, 1), round(first.duration_s)
('15:14', 76.4, 494)
>>> look = orbit.look(station, start, [first.tca_s])
>>> round(float(look.elevation_deg[0]), 1), round(float(look.slant_range_km[0]))
(76.4, 565)

Units are in the names, as everywhere in satlink: ``elevation_deg``, ``slant_range_km``,
``delay_s``, ``duration_s``, ``aos_utc`` (acquisition of signal), ``tca_utc`` (time of closest
approach, the culmination), ``los_utc`` (loss of signal).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from satlink.config import ConfigError, check_real

__all__ = [
    "SPEED_OF_LIGHT_KM_S",
    "GroundStation",
    "Look",
    "Orbit",
    "OrbitConfig",
    "OrbitError",
    "Pass",
    "find_passes",
    "parse_utc",
    "pass_track",
]

SPEED_OF_LIGHT_KM_S = 299_792.458


class OrbitError(ConfigError):
    """A bad TLE, ground station or time; the message names the field."""


def parse_utc(text: str | datetime, name: str = "start_utc") -> datetime:
    """A timezone-aware UTC datetime from ISO 8601 text (``2025-04-27T15:00:00Z``).

    >>> parse_utc("2025-04-27T15:00:00Z").isoformat()
    '2025-04-27T15:00:00+00:00'
    """
    if isinstance(text, datetime):
        dt = text
    else:
        if not isinstance(text, str):
            raise OrbitError(f"{name} = {text!r}: expected an ISO 8601 UTC time string")
        try:
            dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise OrbitError(
                f"{name} = {text!r}: not an ISO 8601 time; allowed: e.g. 2025-04-27T15:00:00Z"
            ) from None
    if dt.tzinfo is None:
        raise OrbitError(f"{name} = {text!r}: give the time zone (append Z for UTC)")
    return dt.astimezone(UTC)


@dataclass(frozen=True)
class GroundStation:
    """A station on the WGS 84 ellipsoid and the elevation mask of its antenna.

    >>> GroundStation(latitude_deg=91.0, longitude_deg=0.0)
    Traceback (most recent call last):
    ...
    satlink.orbit.OrbitError: ground_station.latitude_deg = 91.0 is out of range; allowed: \
in [-90, 90]
    """

    latitude_deg: float
    longitude_deg: float
    altitude_m: float = 0.0
    min_elevation_deg: float = 10.0

    def __post_init__(self) -> None:
        e = OrbitError
        check_real("ground_station.latitude_deg", self.latitude_deg, lo=-90, hi=90, error=e)
        check_real("ground_station.longitude_deg", self.longitude_deg, lo=-180, hi=360, error=e)
        check_real("ground_station.altitude_m", self.altitude_m, lo=-500, hi=10_000, error=e)
        check_real("ground_station.min_elevation_deg", self.min_elevation_deg, lo=0, hi=89, error=e)

    def topos(self) -> Any:
        """The skyfield ``GeographicPosition`` of the station."""
        from skyfield.api import wgs84

        return wgs84.latlon(self.latitude_deg, self.longitude_deg, elevation_m=self.altitude_m)


@dataclass(frozen=True)
class OrbitConfig:
    """The ``[orbit]`` table of a scenario: a TLE, the scenario's start time (t = 0) and how
    many days of passes to propagate; ``step_s`` samples each pass for the channel.

    >>> OrbitConfig("1 x", "2 y", start_utc="2025-04-27")
    Traceback (most recent call last):
    ...
    satlink.orbit.OrbitError: orbit.start_utc = '2025-04-27': give the time zone (append Z for UTC)
    """

    tle_line1: str
    tle_line2: str
    start_utc: str
    name: str = ""
    source: str = ""
    days: float = 1.0
    step_s: float = 1.0

    def __post_init__(self) -> None:
        parse_utc(self.start_utc, "orbit.start_utc")
        check_real("orbit.days", self.days, lo=0.0, lo_open=True, hi=60.0, error=OrbitError)
        check_real("orbit.step_s", self.step_s, lo=0.0, lo_open=True, hi=600.0, error=OrbitError)

    @property
    def start(self) -> datetime:
        return parse_utc(self.start_utc, "orbit.start_utc")

    def orbit(self) -> Orbit:
        return Orbit(self.tle_line1, self.tle_line2, self.name)


@dataclass(frozen=True)
class Look:
    """Where the satellite is seen at each time: arrays of one value per time."""

    t_s: np.ndarray
    elevation_deg: np.ndarray
    azimuth_deg: np.ndarray
    slant_range_km: np.ndarray

    @property
    def delay_s(self) -> np.ndarray:
        """One-hop propagation delay, slant range / c."""
        return self.slant_range_km / SPEED_OF_LIGHT_KM_S


@dataclass(frozen=True)
class Pass:
    """One pass above the station's mask: times in UTC and in seconds from the start."""

    aos_utc: datetime
    tca_utc: datetime
    los_utc: datetime
    max_elevation_deg: float
    aos_s: float
    tca_s: float
    los_s: float

    @property
    def duration_s(self) -> float:
        return self.los_s - self.aos_s

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON (times as ISO 8601 UTC with microseconds)."""
        return {
            "aos_utc": _iso(self.aos_utc),
            "tca_utc": _iso(self.tca_utc),
            "los_utc": _iso(self.los_utc),
            "max_elevation_deg": round(self.max_elevation_deg, 3),
            "duration_s": round(self.duration_s, 3),
            "aos_s": round(self.aos_s, 3),
            "los_s": round(self.los_s, 3),
        }


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _timescale() -> Any:
    from skyfield.api import load

    return load.timescale(builtin=True)  # the tables shipped with skyfield: no download


class Orbit:
    """A satellite from its two-line element set, propagated with SGP4 (skyfield).

    Checksums and format are verified; a bad line is an :class:`OrbitError` naming it.
    """

    def __init__(self, tle_line1: str, tle_line2: str, name: str = "") -> None:
        from sgp4.api import Satrec
        from skyfield.api import EarthSatellite

        for key, line, first in (
            ("orbit.tle_line1", tle_line1, "1"),
            ("orbit.tle_line2", tle_line2, "2"),
        ):
            if not isinstance(line, str):
                raise OrbitError(f"{key}: expected a string, got {line!r}")
            text = line.rstrip()
            if len(text) != 69 or text[0] != first:
                raise OrbitError(
                    f"{key} = {line!r}: expected a 69-character TLE line starting with {first!r}"
                )
            if _tle_checksum(text) != text[68]:
                raise OrbitError(
                    f"{key}: checksum digit is {text[68]!r}, the line sums to "
                    f"{_tle_checksum(text)!r}; the line is damaged"
                )
        self.tle_line1, self.tle_line2 = tle_line1.rstrip(), tle_line2.rstrip()
        sat = Satrec.twoline2rv(self.tle_line1, self.tle_line2)
        if sat.error:
            raise OrbitError(f"orbit: SGP4 rejects this TLE (error code {sat.error})")
        self.ts = _timescale()
        self.satellite = EarthSatellite(self.tle_line1, self.tle_line2, name or None, self.ts)
        self.name = name

    @property
    def epoch_utc(self) -> datetime:
        """Epoch of the element set."""
        return self.satellite.epoch.utc_datetime()

    @property
    def altitude_km(self) -> float:
        """Mean altitude above a 6378.137 km equator, from the mean motion (for the docs)."""
        n_rad_s = self.satellite.model.no_kozai / 60.0
        a_km = (398_600.4418 / n_rad_s**2) ** (1.0 / 3.0)
        return a_km - 6378.137

    def _times(self, start_utc: datetime, t_s: Sequence[float] | np.ndarray) -> Any:
        t = np.asarray(t_s, dtype=float)
        s = start_utc
        return self.ts.utc(
            s.year, s.month, s.day, s.hour, s.minute, s.second + s.microsecond * 1e-6 + t
        )

    def look(
        self, station: GroundStation, start_utc: datetime, t_s: Sequence[float] | np.ndarray
    ) -> Look:
        """Elevation, azimuth and slant range at ``t_s`` seconds after ``start_utc``."""
        t = np.asarray(t_s, dtype=float)
        topo = (self.satellite - station.topos()).at(self._times(start_utc, t))
        alt, az, dist = topo.altaz()
        return Look(t, np.asarray(alt.degrees), np.asarray(az.degrees), np.asarray(dist.km))


def _tle_checksum(line: str) -> str:
    return str(sum(int(c) if c.isdigit() else c == "-" for c in line[:68]) % 10)


def find_passes(
    orbit: Orbit,
    station: GroundStation,
    start_utc: datetime,
    days: float = 1.0,
    min_elevation_deg: float | None = None,
) -> list[Pass]:
    """Passes above the mask (default: the station's) that rise and set within ``days``.

    Event times are skyfield's ``find_events`` (rise, culmination, set); a pass already in
    progress at the start or still up at the end is cut to the interval (``aos_s = 0``, or
    ``los_s`` at the end), so every window lies inside it.
    """
    check_real("days", days, lo=0.0, lo_open=True, hi=60.0, error=OrbitError)
    mask = station.min_elevation_deg if min_elevation_deg is None else min_elevation_deg
    start = parse_utc(start_utc)
    end = start + timedelta(days=days)
    ts = orbit.ts
    t0, t1 = ts.from_datetime(start), ts.from_datetime(end)
    times, events = orbit.satellite.find_events(station.topos(), t0, t1, altitude_degrees=mask)
    horizon_s = days * 86_400.0
    out: list[Pass] = []
    aos: float | None = None
    if len(events) and events[0] != 0:  # in view at the start
        el0 = orbit.look(station, start, [0.0]).elevation_deg[0]
        aos = 0.0 if el0 >= mask else None
    tca: float | None = None
    for t, ev in zip(times, events, strict=True):
        sec = (t.utc_datetime() - start).total_seconds()
        if ev == 0:
            aos, tca = sec, None
        elif ev == 1:
            if aos is not None and (
                tca is None or _el(orbit, station, start, sec) > _el(orbit, station, start, tca)
            ):
                tca = sec
        elif aos is not None:
            out.append(_make_pass(orbit, station, start, aos, tca, sec))
            aos, tca = None, None
    if aos is not None:  # still up at the end
        out.append(_make_pass(orbit, station, start, aos, tca, horizon_s))
    return out


def _el(orbit: Orbit, station: GroundStation, start: datetime, t_s: float) -> float:
    return float(orbit.look(station, start, [t_s]).elevation_deg[0])


def _make_pass(
    orbit: Orbit,
    station: GroundStation,
    start: datetime,
    aos_s: float,
    tca_s: float | None,
    los_s: float,
) -> Pass:
    if tca_s is None:  # cut pass without its culmination inside: the highest end
        tca_s = max((aos_s, los_s), key=lambda s: _el(orbit, station, start, s))
    max_el = _el(orbit, station, start, tca_s)

    def utc(sec: float) -> datetime:
        return start + timedelta(seconds=sec)

    return Pass(utc(aos_s), utc(tca_s), utc(los_s), max_el, aos_s, tca_s, los_s)


def pass_track(
    orbit: Orbit,
    station: GroundStation,
    start_utc: datetime,
    passes: Sequence[Pass],
    step_s: float = 1.0,
) -> Look:
    """Elevation and slant range sampled every ``step_s`` over each pass (ends included), in
    one array sorted by time: what the channel interpolates per message."""
    check_real("step_s", step_s, lo=0.0, lo_open=True, hi=600.0, error=OrbitError)
    chunks = []
    for p in passes:
        n = max(2, math.ceil((p.los_s - p.aos_s) / step_s) + 1)
        chunks.append(np.linspace(p.aos_s, p.los_s, n))
    t = np.concatenate(chunks) if chunks else np.zeros(0)
    if not len(t):
        return Look(t, t.copy(), t.copy(), t.copy())
    return orbit.look(station, parse_utc(start_utc), t)
