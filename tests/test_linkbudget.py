"""Link budget: geometry, FSPL, C/N0, Eb/N0, BER, PER, passes, formatting and validation."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from satlink.linkbudget import (
    BOLTZMANN_DB,
    EARTH_RADIUS_KM,
    MODULATIONS,
    BudgetConfig,
    CircularPass,
    ElevationProfile,
    LinkBudgetError,
    ber_for_ebn0,
    budget_over_pass,
    evaluate_budget,
    format_budget_table,
    fspl_db,
    packet_error_rate,
    propagation_delay_s,
    required_ebn0_db,
    slant_range_km,
)

REQUIRED_KEYS = {
    "freq_hz",
    "slant_range_km",
    "fspl_db",
    "eirp_dbw",
    "losses_db",
    "gt_dbk",
    "cn0_dbhz",
    "rate_bps",
    "ebn0_db",
    "required_ebn0_db",
    "margin_db",
    "ber",
    "packet_bits",
    "per",
}


def _cfg(**kw: object) -> BudgetConfig:
    base: dict[str, object] = {
        "freq_hz": 1.6e9,
        "eirp_dbw": 10.0,
        "gt_dbk": -10.0,
        "rate_bps": 2400.0,
    }
    base.update(kw)
    return BudgetConfig(**base)  # type: ignore[arg-type]


# --- geometry ------------------------------------------------------------------------------------


def test_fspl_geo_zenith_at_1_6_ghz_is_187_6_db() -> None:
    assert fspl_db(35_786.0, 1.6e9) == pytest.approx(187.6, abs=0.1)


def test_slant_range_zenith_equals_altitude_and_horizon_is_tangent() -> None:
    assert slant_range_km(35_786.0, 90.0) == pytest.approx(35_786.0)
    r = EARTH_RADIUS_KM + 35_786.0
    assert slant_range_km(35_786.0, 0.0) == pytest.approx(math.sqrt(r * r - EARTH_RADIUS_KM**2))


@given(
    alt=st.floats(200.0, 40_000.0),
    e1=st.floats(0.0, 90.0),
    e2=st.floats(0.0, 90.0),
)
def test_slant_range_falls_with_elevation(alt: float, e1: float, e2: float) -> None:
    lo, hi = sorted((e1, e2))
    assert slant_range_km(alt, hi) <= slant_range_km(alt, lo) + 1e-9
    assert slant_range_km(alt, lo) >= alt - 1e-9


def test_geo_and_meo_delays_per_hop_match_the_presets_ranges() -> None:
    # the figures: GEO 0.12-0.135 s per hop, BeiDou MEO 72-87 ms per hop
    assert 0.119 <= propagation_delay_s(35_786.0, 90.0) <= propagation_delay_s(35_786.0, 10.0)
    assert propagation_delay_s(35_786.0, 10.0) == pytest.approx(0.135, abs=0.001)
    assert propagation_delay_s(21_528.0, 90.0) == pytest.approx(0.072, abs=0.001)
    assert propagation_delay_s(21_528.0, 10.0) == pytest.approx(0.087, abs=0.001)
    assert propagation_delay_s(35_786.0, 45.0, hops=2) == pytest.approx(
        2 * propagation_delay_s(35_786.0, 45.0)
    )


def test_circular_pass_peaks_at_max_and_ends_at_min_elevation() -> None:
    p = CircularPass(altitude_km=550.0, max_elevation_deg=70.0, min_elevation_deg=10.0)
    half = p.duration_s / 2
    assert p.elevation_deg(0.0) == pytest.approx(70.0)
    assert p.elevation_deg(half) == pytest.approx(10.0, abs=1e-6)
    assert p.elevation_deg(-half) == pytest.approx(10.0, abs=1e-6)
    t = np.linspace(0.0, half, 50)
    assert np.all(np.diff(p.elevation_deg(t)) < 0)  # monotone fall after culmination
    assert p.elevation_deg_scalar(123.0) == pytest.approx(p.elevation_deg(123.0))
    # 550 km LEO: period ~95.5 min, passes of a few minutes
    assert 2 * math.pi / p.angular_rate_rad_s == pytest.approx(5730, abs=5)
    assert 300 < p.duration_s < 700


def test_overhead_pass_is_longer_than_a_low_one() -> None:
    high = CircularPass(550.0, 90.0, 10.0).duration_s
    low = CircularPass(550.0, 20.0, 10.0).duration_s
    assert high > low > 0


def test_elevation_profile_interpolates() -> None:
    prof = ElevationProfile((0.0, 100.0, 200.0), (10.0, 50.0, 10.0))
    assert prof.elevation_deg(50.0) == pytest.approx(30.0)
    with pytest.raises(LinkBudgetError, match=r"elevations_deg\[1\].*\[0, 90\]"):
        ElevationProfile((0.0, 1.0), (10.0, 95.0))
    with pytest.raises(LinkBudgetError, match="strictly increasing"):
        ElevationProfile((0.0, 0.0), (10.0, 20.0))


# --- BER / PER -----------------------------------------------------------------------------------


def test_bpsk_ber_at_9_6_db_is_about_1e_5() -> None:
    assert ber_for_ebn0(9.6, "bpsk") == pytest.approx(1e-5, rel=0.05)
    assert ber_for_ebn0(9.6, "qpsk") == ber_for_ebn0(9.6, "bpsk")  # per bit, Gray coded
    assert ber_for_ebn0(0.0, "bpsk") == pytest.approx(0.0786, abs=1e-4)


def test_required_ebn0_for_bpsk_at_1e_5_is_9_6_db() -> None:
    assert required_ebn0_db("bpsk", 1e-5) == pytest.approx(9.59, abs=0.01)


@pytest.mark.parametrize("modulation", MODULATIONS)
def test_ber_curves_fall_monotonically(modulation: str) -> None:
    x = np.linspace(-5.0, 15.0, 401)
    ber = ber_for_ebn0(x, modulation)
    assert np.all(np.diff(ber) <= 0)
    assert np.all((ber > 0) & (ber <= 0.5))


def test_coded_schemes_gain_over_uncoded() -> None:
    req = {m: required_ebn0_db(m, 1e-5) for m in MODULATIONS}
    assert req["bpsk-conv-k7-r1/2"] == pytest.approx(4.4, abs=0.05)
    assert req["bpsk-turbo-r1/3"] < req["bpsk-rs255-conv-k7"] < req["bpsk-conv-k7-r1/2"]
    assert req["bpsk-conv-k7-r1/2"] < req["bpsk"] - 4.0


@settings(max_examples=60, deadline=None)
@given(
    modulation=st.sampled_from(MODULATIONS),
    log_ber=st.floats(-9.0, -2.0),
)
def test_required_ebn0_inverts_the_ber_curve(modulation: str, log_ber: float) -> None:
    target = 10.0**log_ber
    ebn0 = required_ebn0_db(modulation, target)
    assert ber_for_ebn0(ebn0, modulation) == pytest.approx(target, rel=1e-3)


def test_per_matches_the_formula() -> None:
    assert packet_error_rate(1e-5, 2880) == pytest.approx(1 - (1 - 1e-5) ** 2880)
    assert packet_error_rate(0.0, 2880) == 0.0
    assert packet_error_rate(1e-15, 2880) == pytest.approx(2880e-15, rel=1e-6)  # no cancellation
    assert packet_error_rate(0.5, 2880) == pytest.approx(1.0)


# --- the budget chain ----------------------------------------------------------------------------


def test_budget_terms_add_up() -> None:
    cfg = _cfg(elevation_deg=30.0, atmospheric_loss_db=0.5, rain_loss_db=1.0, misc_loss_db=2.0)
    b = evaluate_budget(cfg)
    assert REQUIRED_KEYS <= set(b)
    assert b["losses_db"] == pytest.approx(3.5)
    assert b["fspl_db"] == pytest.approx(fspl_db(b["slant_range_km"], 1.6e9))
    cn0 = b["eirp_dbw"] - b["fspl_db"] - b["losses_db"] + b["gt_dbk"] + BOLTZMANN_DB
    assert b["cn0_dbhz"] == pytest.approx(cn0)
    assert b["ebn0_db"] == pytest.approx(cn0 - 10 * math.log10(2400.0))
    assert b["margin_db"] == pytest.approx(b["ebn0_db"] - b["required_ebn0_db"])
    assert b["ber"] == pytest.approx(ber_for_ebn0(b["ebn0_db"], "bpsk"))
    assert b["per"] == pytest.approx(packet_error_rate(b["ber"], 2880))
    assert b["packet_bits"] == 2880
    json.dumps(b)  # plain numbers only


def test_required_ebn0_override_sets_the_margin() -> None:
    b = evaluate_budget(_cfg(required_ebn0_db=3.0))
    assert b["required_ebn0_db"] == 3.0
    assert b["margin_db"] == pytest.approx(b["ebn0_db"] - 3.0)


@pytest.mark.parametrize("modulation", MODULATIONS)
@pytest.mark.parametrize("elevation", [5.0, 20.0, 45.0, 89.0])
def test_fast_ber_function_matches_the_full_budget(modulation: str, elevation: float) -> None:
    cfg = _cfg(altitude_km=550.0, eirp_dbw=3.0, gt_dbk=-25.0, modulation=modulation)
    fast = cfg.ber_function()(elevation)
    full = evaluate_budget(cfg, elevation_deg=elevation)["ber"]
    assert fast == pytest.approx(full, rel=1e-9)


def test_budget_over_a_pass_varies_with_elevation() -> None:
    cfg = _cfg(
        freq_hz=2.2e9,
        eirp_dbw=3.0,
        gt_dbk=-25.0,
        altitude_km=550.0,
        pass_max_elevation_deg=70.0,
        min_elevation_deg=10.0,
        step_s=30.0,
    )
    steps = budget_over_pass(cfg)
    assert all(REQUIRED_KEYS <= set(s) for s in steps)
    el = [s["elevation_deg"] for s in steps]
    assert el[0] == pytest.approx(10.0) and el[-1] == pytest.approx(10.0)
    assert max(el) == pytest.approx(70.0, abs=1.0)
    assert steps[-1]["t_s"] == pytest.approx(cfg.circular_pass().duration_s)
    margins = [s["margin_db"] for s in steps]
    assert max(margins) - min(margins) > 8.0  # FSPL falls by ~10 dB from horizon to 70 deg
    json.dumps(steps)


def test_budget_over_a_given_elevation_profile() -> None:
    prof = ElevationProfile((100.0, 200.0, 300.0), (10.0, 80.0, 10.0))
    steps = budget_over_pass(_cfg(altitude_km=550.0), prof, step_s=50.0)
    assert [s["t_s"] for s in steps] == [0.0, 50.0, 100.0, 150.0, 200.0]
    assert steps[2]["elevation_deg"] == pytest.approx(80.0)


def test_format_budget_table_one_term_per_row() -> None:
    text = format_budget_table(evaluate_budget(_cfg()))
    for term in ("EIRP", "Free-space path loss", "G/T", "C/N0", "Eb/N0", "Margin", "BER", "PER"):
        assert term in text
    assert "dB" in text


def test_format_budget_table_over_a_pass() -> None:
    cfg = _cfg(altitude_km=550.0, pass_max_elevation_deg=60.0, step_s=60.0)
    steps = budget_over_pass(cfg)
    text = format_budget_table(steps, title="pass")
    lines = text.splitlines()
    assert lines[0] == "pass"
    assert len(lines) == len(steps) + 3
    assert "margin (dB)" in lines[1]


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "pattern"),
    [
        ({"rate_bps": -1.0}, r"budget\.rate_bps = -1\.0 is out of range; allowed: > 0"),
        ({"rate_bps": 0}, r"budget\.rate_bps.*> 0"),
        ({"elevation_deg": 95.0}, r"budget\.elevation_deg = 95\.0.*\[0, 90\]"),
        ({"elevation_deg": -1.0}, r"budget\.elevation_deg.*\[0, 90\]"),
        ({"freq_hz": 0.0}, r"budget\.freq_hz"),
        ({"misc_loss_db": -3.0}, r"budget\.misc_loss_db.*\[0, 100\]"),
        ({"target_ber": 0.7}, r"budget\.target_ber.*\(0, 0\.5\]"),
        ({"modulation": "8psk"}, r"budget\.modulation = '8psk': allowed values are 'bpsk'"),
        ({"atmosphere": "p618"}, r"budget\.atmosphere.*'constant', 'itur'"),
        ({"eirp_dbw": "10"}, r"budget\.eirp_dbw = '10': expected a number"),
        ({"eirp_dbw": True}, r"budget\.eirp_dbw = True: expected a number"),
        ({"eirp_dbw": math.nan}, r"budget\.eirp_dbw = nan: expected a finite number"),
        ({"packet_bytes": 0}, r"budget\.packet_bytes = 0.*integer >= 1"),
        (
            {"pass_max_elevation_deg": 20.0, "min_elevation_deg": 30.0},
            r"min_elevation_deg = 30\.0 is above pass_max_elevation_deg",
        ),
    ],
)
def test_invalid_budget_parameters_name_the_field_and_range(
    kw: dict[str, object], pattern: str
) -> None:
    with pytest.raises(LinkBudgetError, match=pattern):
        _cfg(**kw)


def test_invalid_pass_and_elevation_arguments() -> None:
    with pytest.raises(LinkBudgetError, match=r"max_elevation_deg = 91.*\[0, 90\]"):
        CircularPass(550.0, 91)
    with pytest.raises(LinkBudgetError, match=r"elevation_deg = 120.*\[0, 90\]"):
        evaluate_budget(_cfg(), elevation_deg=120)
    with pytest.raises(LinkBudgetError, match="pass_max_elevation_deg is not set"):
        _cfg().circular_pass()


def test_itur_atmosphere_without_the_package_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "itur", None)  # makes "import itur" fail
    cfg = _cfg(atmosphere="itur", site_lat_deg=40.0, site_lon_deg=116.0)
    with pytest.raises(
        LinkBudgetError, match=r"needs the optional package 'itur'.*satlink\[itur\]"
    ):
        evaluate_budget(cfg)


def test_itur_atmosphere_uses_itu_r_attenuation() -> None:
    """Runs where the optional ``itur`` package is installed (it is not in the test extras)."""
    pytest.importorskip("itur")
    cfg = _cfg(atmosphere="itur", site_lat_deg=1.3, site_lon_deg=103.8, freq_hz=12e9)
    low, high = (evaluate_budget(cfg, elevation_deg=el) for el in (10.0, 60.0))
    # Ku band in Singapore at 99 % availability: rain fade (1.3 dB at 60°, 4.8 dB at 10° here),
    # more through the longer low-elevation path, and it enters C/N0.
    assert high["rain_loss_db"] > 1.0 and low["rain_loss_db"] > high["rain_loss_db"]
    assert low["atmospheric_loss_db"] > high["atmospheric_loss_db"] > 0.0
    const = evaluate_budget(
        _cfg(freq_hz=12e9, atmospheric_loss_db=0.0, rain_loss_db=0.0), elevation_deg=60.0
    )
    drop_db = const["cn0_dbhz"] - high["cn0_dbhz"]
    assert drop_db == pytest.approx(high["atmospheric_loss_db"] + high["rain_loss_db"], abs=1e-6)


def test_scalar_slant_range_matches_the_array_one_and_errors_share_one_family() -> None:
    import satlink.config
    from satlink.linkbudget import ConfigError, LinkBudgetError, slant_range_scalar_km

    for alt, el in [(550.0, 10.0), (35_786.0, 45.0), (20_000.0, 90.0), (1200.0, 0.0)]:
        assert slant_range_scalar_km(alt, el) == pytest.approx(slant_range_km(alt, el), rel=1e-12)
    assert ConfigError is satlink.config.ConfigError
    assert LinkBudgetError is satlink.config.LinkBudgetError
    assert issubclass(LinkBudgetError, ConfigError)
    with pytest.raises(LinkBudgetError, match="modulation = 'fsk'"):
        ber_for_ebn0(5.0, "fsk")


# --- coded frame errors: the error-event model ---------------------------------------------------


def _enumerate_k7_spectrum(max_d: int = 20) -> dict[int, tuple[int, int]]:
    """(a_d, c_d) of the K=7 (171, 133) code by dynamic programming over its 64-state trellis."""
    gens = (0o171, 0o133)

    def step(state: int, bit: int) -> tuple[int, int]:
        reg = (bit << 6) | state
        return reg >> 1, sum(bin(reg & g).count("1") % 2 for g in gens)

    found: dict[int, list[int]] = {}
    s0, w0 = step(0, 1)
    paths = {(s0, w0): (1, 1)}  # (state, distance) -> (paths, information-bit errors)
    while paths:
        nxt: dict[tuple[int, int], tuple[int, int]] = {}
        for (state, d), (a, c) in paths.items():
            for bit in (0, 1):
                s2, w = step(state, bit)
                d2 = d + w
                if d2 > max_d:
                    continue
                if s2 == 0:  # remerged: one error event
                    acc = found.setdefault(d2, [0, 0])
                    acc[0] += a
                    acc[1] += c + a * bit
                else:
                    pa, pc = nxt.get((s2, d2), (0, 0))
                    nxt[(s2, d2)] = (pa + a, pc + c + a * bit)
        paths = nxt
    return {d: (a, c) for d, (a, c) in found.items()}


def test_the_published_k7_distance_spectrum_is_the_codes() -> None:
    from satlink.modulation import CONV_K7_SPECTRUM

    enumerated = _enumerate_k7_spectrum()
    assert {d: (a, c) for d, a, c in CONV_K7_SPECTRUM} == enumerated


def test_viterbi_errors_come_in_events_of_about_four_bits() -> None:
    from satlink.modulation import bits_per_error_event, message_error_rate

    conv = "bpsk-conv-k7-r1/2"
    assert 3.6 < bits_per_error_event(4.4, conv) < 4.4  # CCSDS 130.1-G: bursts, not bits
    assert bits_per_error_event(7.0, conv) == pytest.approx(36 / 11, rel=0.05)  # d_free events
    assert bits_per_error_event(4.4, "bpsk") == 1.0
    iid = packet_error_rate(1e-5, 2880)
    event = message_error_rate(4.4, 2880, conv)
    assert event == pytest.approx(1 - (1 - 1e-5 / bits_per_error_event(4.4, conv)) ** 2880)
    assert iid / 4.4 < event < iid / 3.6
    # uncoded: the event model is the independent-bit formula
    assert message_error_rate(9.6, 2880, "bpsk") == pytest.approx(
        packet_error_rate(ber_for_ebn0(9.6), 2880)
    )


def test_budget_per_uses_the_event_model_and_a_given_range() -> None:
    from satlink.modulation import message_error_rate

    cfg = BudgetConfig(
        freq_hz=1.6e9, eirp_dbw=10.0, gt_dbk=-8.0, rate_bps=2400.0, modulation="bpsk-conv-k7-r1/2"
    )
    b = evaluate_budget(cfg)
    assert b["per"] == pytest.approx(message_error_rate(b["ebn0_db"], 2880, cfg.modulation))
    near = evaluate_budget(cfg, slant_range_km=b["slant_range_km"] / 2)
    assert near["ebn0_db"] == pytest.approx(b["ebn0_db"] + 20 * math.log10(2))
    f = cfg.ebn0_function()
    assert f(90.0, b["slant_range_km"]) == pytest.approx(b["ebn0_db"])
