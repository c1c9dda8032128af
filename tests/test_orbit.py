"""Orbits from a TLE (satlink.orbit): passes agree with skyfield's own find_events, geometry
is consistent, bad input is named, and nothing is downloaded."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from satlink.cli import main
from satlink.orbit import (
    GroundStation,
    Orbit,
    OrbitConfig,
    OrbitError,
    find_passes,
    parse_utc,
    pass_track,
)
from satlink.scenario import ScenarioError, load_scenario

# STARLINK-1008 (NORAD 44714), epoch 2025-04-27, as in scenarios/leo-tle-pass.toml
TLE1 = "1 44714U 19074B   25117.42924319 -.00001157  00000+0 -58773-4 0  9990"
TLE2 = "2 44714  53.0517 166.3609 0001116  99.1558 260.9557 15.06400606301084"
BEIJING = GroundStation(latitude_deg=39.9042, longitude_deg=116.4074, altitude_m=50.0)
START = datetime(2025, 4, 27, 15, 10, tzinfo=UTC)


@pytest.fixture(scope="module")
def orbit() -> Orbit:
    return Orbit(TLE1, TLE2, name="STARLINK-1008")


def _skyfield_events(orbit: Orbit, station: GroundStation, start: datetime, days: float):
    from skyfield.api import EarthSatellite, load, wgs84

    ts = load.timescale(builtin=True)
    sat = EarthSatellite(TLE1, TLE2, "x", ts)
    topos = wgs84.latlon(station.latitude_deg, station.longitude_deg, station.altitude_m)
    t, ev = sat.find_events(
        topos,
        ts.from_datetime(start),
        ts.from_datetime(start + timedelta(days=days)),
        altitude_degrees=station.min_elevation_deg,
    )
    return [(ti.utc_datetime(), int(e)) for ti, e in zip(t, ev, strict=True)]


def test_passes_agree_with_skyfield_find_events_within_one_second(orbit: Orbit) -> None:
    passes = find_passes(orbit, BEIJING, START, days=1.0)
    events = _skyfield_events(orbit, BEIJING, START, 1.0)
    rises = [t for t, e in events if e == 0]
    sets = [t for t, e in events if e == 2]
    risen = [p for p in passes if p.aos_s > 0]  # not already up at the start
    settled = [p for p in passes if p.los_s < 86_400.0]  # not still up at the end
    assert len(risen) == len(rises) and len(settled) == len(sets)
    assert 4 <= len(passes) <= 9  # a 53-deg, 550 km orbit from 40 N: 4-6 a day, clustered
    for p, rise in zip(risen, rises, strict=True):
        assert abs((p.aos_utc - rise).total_seconds()) < 1.0
    for p, set_ in zip(settled, sets, strict=True):
        assert abs((p.los_utc - set_).total_seconds()) < 1.0
    peaks = [t for t, e in events if e == 1]
    assert len(peaks) >= len(settled)
    for p in settled:  # the culmination is one of skyfield's
        assert min(abs((p.tca_utc - t).total_seconds()) for t in peaks) < 1.0


def test_pass_geometry_is_consistent(orbit: Orbit) -> None:
    p = find_passes(orbit, BEIJING, START, days=0.5)[0]
    look = orbit.look(BEIJING, START, [p.aos_s, p.tca_s, p.los_s])
    el = look.elevation_deg
    assert el[0] == pytest.approx(10.0, abs=0.05) and el[2] == pytest.approx(10.0, abs=0.05)
    assert el[1] == pytest.approx(p.max_elevation_deg) and el[1] > el[0]
    # a ~547 km orbit: range ~altitude overhead, ~1,700-1,800 km at 10 deg
    assert 540 < look.slant_range_km[1] < 700 and 1600 < look.slant_range_km[0] < 1900
    assert look.delay_s[1] == pytest.approx(look.slant_range_km[1] / 299_792.458)
    assert orbit.altitude_km == pytest.approx(547, abs=5)
    assert orbit.epoch_utc.strftime("%Y-%m-%d %H:%M") == "2025-04-27 10:18"


def test_pass_track_samples_every_pass_inside_its_window(orbit: Orbit) -> None:
    passes = find_passes(orbit, BEIJING, START, days=1.0)
    track = pass_track(orbit, BEIJING, START, passes, step_s=5.0)
    assert np.all(np.diff(track.t_s) >= 0)
    assert np.all(track.elevation_deg >= BEIJING.min_elevation_deg - 0.1)
    inside = [any(p.aos_s <= t <= p.los_s for p in passes) for t in track.t_s]
    assert all(inside)


def test_a_pass_in_progress_at_the_start_is_cut_to_it(orbit: Orbit) -> None:
    first = find_passes(orbit, BEIJING, START, days=1.0)[0]
    mid = START + timedelta(seconds=first.tca_s)
    cut = find_passes(orbit, BEIJING, mid, days=0.1)[0]
    assert cut.aos_s == 0.0
    assert abs((cut.los_utc - first.los_utc).total_seconds()) < 1.0


@pytest.mark.parametrize(
    ("line1", "line2", "pattern"),
    [
        (TLE1[:-1] + "1", TLE2, "orbit.tle_line1: checksum"),
        (TLE1, TLE2[:40], "orbit.tle_line2 = .*69-character"),
        (TLE2, TLE1, "orbit.tle_line1 = .*starting with '1'"),
    ],
)
def test_bad_tles_are_named(line1: str, line2: str, pattern: str) -> None:
    with pytest.raises(OrbitError, match=pattern):
        Orbit(line1, line2)


def test_bad_times_and_stations_are_named() -> None:
    with pytest.raises(OrbitError, match="time zone"):
        parse_utc("2025-04-27T15:00:00")
    with pytest.raises(OrbitError, match="not an ISO 8601"):
        OrbitConfig(TLE1, TLE2, start_utc="yesterday")
    with pytest.raises(OrbitError, match=r"ground_station\.min_elevation_deg"):
        GroundStation(latitude_deg=0.0, longitude_deg=0.0, min_elevation_deg=95.0)


def test_the_link_follows_the_propagated_geometry() -> None:
    s = load_scenario("leo-tle-pass")
    track = s.channel.track
    assert track is not None and s.channel.visibility.mode == "passes"
    _, trace = s.build_link(0).run([bytes(360)] * 40)
    on_air = trace["outcome"] != "waited-for-visibility"
    for t1, el, d in zip(
        trace["t_tx_end_s"][on_air],
        trace["elevation_deg"][on_air],
        trace["delay_s"][on_air],
        strict=True,
    ):
        want_el, want_km = track.at(t1)
        assert el == pytest.approx(want_el) and d == pytest.approx(want_km / 299_792.458)
        assert any(a <= t1 <= b for a, b in track.windows_s)
    assert np.all(np.isfinite(trace["ebn0_db"][on_air]))


def test_passes_cli_json_matches_skyfield(capsys: pytest.CaptureFixture[str], orbit) -> None:
    assert main(["passes", "leo-tle-pass", "--days", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"aos_utc", "los_utc", "max_elevation_deg", "duration_s"} <= set(rows[0])
    start = START
    events = _skyfield_events(orbit, BEIJING, start, 1.0)
    rises = [t for t, e in events if e == 0]
    got = [parse_utc(r["aos_utc"]) for r in rows if r["aos_s"] > 0]
    assert len(got) == len(rises)
    assert max(abs((a - b).total_seconds()) for a, b in zip(got, rises, strict=True)) < 1.0
    assert all(math.isclose(r["duration_s"], 0, abs_tol=1) is False for r in rows)


def test_passes_cli_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["passes", "bds3-rsmc-geo"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no [orbit]" in err


def test_orbit_and_station_go_together() -> None:
    from satlink.scenario import parse_scenario

    data = load_scenario("leo-tle-pass").to_dict()
    assert parse_scenario(data).channel == load_scenario("leo-tle-pass").channel  # round trip
    del data["ground_station"]
    with pytest.raises(ScenarioError, match=r"missing table \[ground_station\]"):
        parse_scenario(data)


def test_no_network_is_touched(monkeypatch: pytest.MonkeyPatch, orbit: Orbit) -> None:
    import socket

    def refuse(*a, **k):
        raise AssertionError("network access")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert find_passes(Orbit(TLE1, TLE2), BEIJING, START, days=0.3)
