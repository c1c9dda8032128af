"""SimPy link: timing, queue, visibility, delay, loss models, bit errors, ARQ, trace, seeds."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from satlink.channel import (
    OUTCOMES,
    ArqConfig,
    ChannelConfigError,
    DelayConfig,
    GilbertElliott,
    Link,
    LinkConfig,
    LossConfig,
    VisibilityConfig,
    gilbert_elliott_stationary_loss,
)
from satlink.linkbudget import BudgetConfig, propagation_delay_s

GEO_HOP_S = propagation_delay_s(35_786.0, 90.0)


def _packets(n: int, size: int = 360) -> list[bytes]:
    rng = np.random.default_rng(1234)
    return [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for _ in range(n)]


def _rows(trace, outcome: str | None = None) -> list[dict]:
    return [r for r in trace.rows() if outcome is None or r["outcome"] == outcome]


# --- Gilbert-Elliott -----------------------------------------------------------------------------


def _ge_sigma(p: float, r: float, lg: float, lb: float, n: int) -> float:
    """Standard deviation of the loss fraction over n messages (Markov-modulated Bernoulli)."""
    m = gilbert_elliott_stationary_loss(p, r, lg, lb)
    pi_g, pi_b = r / (p + r), p / (p + r)
    lam = 1.0 - p - r  # lag-k autocorrelation of the state is lam**k
    var = m * (1 - m) + 2 * (lb - lg) ** 2 * pi_g * pi_b * lam / (1 - lam)
    return math.sqrt(var / n)


@pytest.mark.parametrize("seed", range(5))
def test_gilbert_elliott_long_run_loss_within_1_percent_over_100k(seed: int) -> None:
    # With 100,000 messages the loss fraction's own spread is ~0.3% (relative) here, so 1% is a
    # > 3-sigma check; for low-loss, long-burst channels 100k messages cannot resolve 1%.
    p, r, lg, lb = 0.5, 0.25, 0.1, 0.9
    n = 100_000
    stationary = gilbert_elliott_stationary_loss(p, r, lg, lb)
    assert 0.01 * stationary >= 3 * _ge_sigma(p, r, lg, lb, n)
    lost, bad = GilbertElliott(p, r, lg, lb, np.random.default_rng(seed)).draw(n)
    assert abs(lost.mean() - stationary) / stationary < 0.01
    assert bad.mean() == pytest.approx(p / (p + r), rel=0.02)


def test_gilbert_elliott_bursty_channel_within_4_sigma() -> None:
    p, r, lg, lb = 0.01, 0.2, 0.0, 0.8
    n = 100_000
    lost, _ = GilbertElliott(p, r, lg, lb, np.random.default_rng(7)).draw(n)
    stationary = gilbert_elliott_stationary_loss(p, r, lg, lb)
    assert abs(lost.mean() - stationary) < 4 * _ge_sigma(p, r, lg, lb, n)


def test_gilbert_elliott_transitions_are_p_and_r_across_chunks() -> None:
    # draw in small odd-sized chunks: runs cut at chunk ends must continue correctly
    ge = GilbertElliott(0.1, 0.3, 0.0, 1.0, np.random.default_rng(11))
    bad = np.concatenate([ge.draw(13)[1] for _ in range(8000)])
    prev, nxt = bad[:-1], bad[1:]
    p_hat = np.mean(nxt[~prev])
    r_hat = np.mean(~nxt[prev])
    assert p_hat == pytest.approx(0.1, abs=0.01)
    assert r_hat == pytest.approx(0.3, abs=0.02)


def test_gilbert_elliott_degenerate_chains() -> None:
    ge = GilbertElliott(0.0, 0.0, 0.25, 1.0, np.random.default_rng(0))
    assert not np.concatenate([ge.draw(100)[1] for _ in range(5)]).any()  # never leaves good
    ge = GilbertElliott(1.0, 0.0, 0.0, 1.0, np.random.default_rng(0))
    bad = np.concatenate([ge.draw(100)[1] for _ in range(5)])
    assert bad[1:].all()  # absorbed in the bad state after at most one step


def test_gilbert_elliott_long_run_through_the_link() -> None:
    loss = LossConfig("gilbert-elliott", p=0.05, r=0.3, loss_good=0.02, loss_bad=0.7)
    n = 20_000
    _, trace = Link(LinkConfig(rate_bps=1e6, loss=loss), seed=5).run(_packets(1, 36) * n)
    lost = np.mean(trace["outcome"] == "lost")
    assert abs(lost - loss.stationary_loss()) < 4 * _ge_sigma(0.05, 0.3, 0.02, 0.7, n)
    assert set(trace["channel_state"]) == {"good", "bad"}


# --- timing --------------------------------------------------------------------------------------


def test_serialization_is_exactly_bits_over_rate() -> None:
    pk = _packets(5, 125)  # 1000 bits at 1000 bps: 1 s each, exactly representable
    _, trace = Link(LinkConfig(rate_bps=1000.0), seed=0).run(pk)
    assert trace["t_tx_start_s"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert trace["t_tx_end_s"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


@settings(max_examples=50, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 2000), min_size=1, max_size=20),
    rate=st.floats(1.0, 1e7),
    delay_s=st.floats(0.0, 10.0),
)
def test_serialization_and_delay_for_any_sizes_and_rates(
    sizes: list[int], rate: float, delay_s: float
) -> None:
    cfg = LinkConfig(rate_bps=rate, delay=DelayConfig(delay_s=delay_s))
    deliveries, trace = Link(cfg, seed=0).run([bytes(s) for s in sizes])
    t0, t1, ta = trace["t_tx_start_s"], trace["t_tx_end_s"], trace["t_arrival_s"]
    expected = np.array(sizes) * 8 / rate
    assert t1[0] - t0[0] == expected[0]  # from t=0 it is bit-exact
    np.testing.assert_allclose(t1 - t0, expected, rtol=1e-12, atol=1e-12 * t1[-1])
    np.testing.assert_array_equal(t0[1:], t1[:-1])  # back to back
    np.testing.assert_allclose(ta - t1, delay_s, rtol=1e-12, atol=1e-12 * ta[-1])
    assert [d.seq for d in deliveries] == list(range(len(sizes)))


def test_min_interval_between_message_starts() -> None:
    cfg = LinkConfig(rate_bps=2400.0, min_interval_s=60.0)
    _, trace = Link(cfg, seed=0).run(_packets(4))
    assert trace["t_tx_start_s"].tolist() == [0.0, 60.0, 120.0, 180.0]
    assert np.allclose(trace["t_tx_end_s"] - trace["t_tx_start_s"], 1.2)


def test_queue_limit_drops_on_overflow() -> None:
    cfg = LinkConfig(rate_bps=2400.0, queue_limit_packets=3)
    deliveries, trace = Link(cfg, seed=0).run(_packets(10))
    counts = trace.counts()
    assert counts["dropped-queue"] == 7 and counts["delivered"] == 3
    assert [d.seq for d in deliveries] == [0, 1, 2]
    # arriving one at a time as the link frees up, nothing is dropped
    times = [1.2 * i for i in range(10)]
    _, trace = Link(cfg, seed=0).run(_packets(10), enqueue_times_s=times)
    assert trace.counts()["dropped-queue"] == 0


def test_enqueue_times_delay_transmission() -> None:
    cfg = LinkConfig(rate_bps=2400.0)
    _, trace = Link(cfg, seed=0).run(_packets(2), enqueue_times_s=[5.0, 100.0])
    assert trace["t_tx_start_s"].tolist() == [5.0, 100.0]
    assert trace["t_enqueue_s"].tolist() == [5.0, 100.0]


# --- visibility ----------------------------------------------------------------------------------


def test_waits_for_the_next_window() -> None:
    vis = VisibilityConfig(mode="windows", windows_s=((10.0, 13.0), (100.0, 200.0)))
    cfg = LinkConfig(rate_bps=2400.0, visibility=vis)  # 1.2 s per packet
    _, trace = Link(cfg, seed=0).run(_packets(4))
    tx = [r for r in _rows(trace) if r["outcome"] == "delivered"]
    assert [r["t_tx_start_s"] for r in tx] == pytest.approx([10.0, 11.2, 100.0, 101.2])
    waits = _rows(trace, "waited-for-visibility")
    assert [(w["seq"], w["wait_s"]) for w in waits] == [(0, 10.0), (2, pytest.approx(100 - 12.4))]
    for r in tx:  # nothing is on the wire when the window closes
        assert any(s <= r["t_tx_start_s"] and r["t_tx_end_s"] <= e for s, e in vis.windows_s)


def test_drop_outside_windows() -> None:
    vis = VisibilityConfig(mode="windows", windows_s=((0.0, 3.0),), outside="drop")
    cfg = LinkConfig(rate_bps=2400.0, visibility=vis)
    deliveries, trace = Link(cfg, seed=0).run(_packets(5))
    assert [d.seq for d in deliveries] == [0, 1]
    assert trace.counts()["dropped-visibility"] == 3


def test_no_window_left_drops_even_in_wait_mode() -> None:
    vis = VisibilityConfig(mode="windows", windows_s=((0.0, 2.0),))
    _, trace = Link(LinkConfig(rate_bps=2400.0, visibility=vis), seed=0).run(_packets(3))
    assert trace.counts()["dropped-visibility"] == 2


def test_periodic_windows() -> None:
    vis = VisibilityConfig(mode="periodic", first_start_s=50.0, duration_s=3.0, period_s=100.0)
    _, trace = Link(LinkConfig(rate_bps=2400.0, visibility=vis), seed=0).run(_packets(5))
    tx = _rows(trace, "delivered")
    assert [r["t_tx_start_s"] for r in tx] == pytest.approx([50.0, 51.2, 150.0, 151.2, 250.0])


# --- delay ---------------------------------------------------------------------------------------


def test_geometry_delay_geo_zenith() -> None:
    delay = DelayConfig(mode="geometry", altitude_km=35_786.0, elevation_deg=90.0, hops=2)
    deliveries, trace = Link(LinkConfig(rate_bps=2400.0, delay=delay), seed=0).run(_packets(1))
    assert trace["delay_s"][0] == pytest.approx(2 * GEO_HOP_S)
    assert deliveries[0].t_arrival_s == pytest.approx(1.2 + 2 * GEO_HOP_S)


def test_geometry_delay_varies_over_a_pass() -> None:
    delay = DelayConfig(
        mode="geometry",
        altitude_km=550.0,
        elevation_mode="pass",
        max_elevation_deg=70.0,
        min_elevation_deg=10.0,
    )
    vis = VisibilityConfig(mode="periodic", period_s=5730.0)  # duration from the pass
    cfg = LinkConfig(rate_bps=2400.0, delay=delay, visibility=vis)
    assert cfg.window_duration_s() == pytest.approx(cfg.pass_duration_s())
    _, trace = Link(cfg, seed=0).run(_packets(390))
    el, d = trace["elevation_deg"], trace["delay_s"]
    assert el.min() == pytest.approx(10.0, abs=0.2) and el.max() == pytest.approx(70.0, abs=0.2)
    assert d.max() == pytest.approx(propagation_delay_s(550.0, 10.0), rel=0.01)
    assert d.min() == pytest.approx(propagation_delay_s(550.0, 70.0), rel=0.01)
    i = int(np.argmax(el))
    assert np.all(np.diff(d[: i + 1]) < 0) and np.all(np.diff(d[i:]) > 0)


def test_jitter_is_within_bounds_and_can_reorder() -> None:
    delay = DelayConfig(delay_s=0.5, jitter_s=2.0)
    deliveries, trace = Link(LinkConfig(rate_bps=1e5, delay=delay), seed=3).run(_packets(300))
    extra = trace["delay_s"] - 0.5
    assert extra.min() >= 0.0 and extra.max() < 2.0
    times = [d.t_arrival_s for d in deliveries]
    assert times == sorted(times)  # deliveries come in arrival order ...
    assert [d.seq for d in deliveries] != sorted(d.seq for d in deliveries)  # ... not seq order


# --- loss models ---------------------------------------------------------------------------------


def test_bernoulli_loss_rate() -> None:
    cfg = LinkConfig(rate_bps=1e6, loss=LossConfig("bernoulli", p=0.2))
    deliveries, trace = Link(cfg, seed=9).run(_packets(1, 36) * 20_000)
    lost = trace.counts()["lost"]
    assert lost / 20_000 == pytest.approx(0.2, abs=4 * math.sqrt(0.16 / 20_000))
    assert len(deliveries) == 20_000 - lost


def _leo_budget_config(loss_model: str, **kw: object) -> LinkConfig:
    delay = DelayConfig(
        mode="geometry",
        altitude_km=550.0,
        elevation_mode="pass",
        max_elevation_deg=70.0,
        min_elevation_deg=10.0,
    )
    budget = BudgetConfig(
        freq_hz=2.2e9,
        eirp_dbw=3.0,
        gt_dbk=-25.0,
        rate_bps=2400.0,
        altitude_km=550.0,
        atmospheric_loss_db=0.5,
        misc_loss_db=1.5,
    )
    return LinkConfig(
        rate_bps=2400.0,
        delay=delay,
        visibility=VisibilityConfig(mode="periodic", period_s=6000.0),
        loss=LossConfig(loss_model),
        budget=budget,
        **kw,  # type: ignore[arg-type]
    )


def test_budget_per_loses_more_near_the_horizon() -> None:
    cfg = _leo_budget_config("budget-per")
    _, trace = Link(cfg, seed=2).run(_packets(390))
    el = trace["elevation_deg"]
    lost = trace["outcome"] == "lost"
    low, high = el < 15.0, el > 40.0
    assert lost[low].mean() > 0.5 and lost[high].mean() < 0.01


def test_bit_errors_flip_real_bits_and_the_receiver_decides() -> None:
    cfg = _leo_budget_config("bit-errors")
    pk = _packets(390)
    deliveries, trace = Link(cfg, seed=4).run(pk)
    assert len(deliveries) == 390  # bit errors never erase a packet
    flips = {r["seq"]: r["bits_flipped"] for r in trace.rows()}
    for d in deliveries:  # exactly bits_flipped bits differ from what was sent
        diff = np.frombuffer(d.payload, np.uint8) ^ np.frombuffer(pk[d.seq], np.uint8)
        assert int(np.unpackbits(diff).sum()) == flips[d.seq]
    outcome = trace["outcome"]
    assert set(outcome) == {"delivered", "corrupted"}
    assert np.all((trace["bits_flipped"] > 0) == (outcome == "corrupted"))
    el = trace["elevation_deg"]
    assert (outcome[el < 15] == "corrupted").mean() > 0.5
    # with the receiver's own check, a copy it accepts is "delivered" whatever the flips
    _, trace2 = Link(cfg, seed=4, integrity_check=lambda b: True).run(pk)
    assert set(trace2["outcome"]) == {"delivered"}
    assert trace2["bits_flipped"].tolist() == trace["bits_flipped"].tolist()


# --- ARQ -----------------------------------------------------------------------------------------


def test_selective_repeat_recovers_losses_after_a_round_trip() -> None:
    cfg = LinkConfig(
        rate_bps=2400.0,
        delay=DelayConfig(delay_s=0.25),
        loss=LossConfig("bernoulli", p=0.5),
        arq=ArqConfig("selective-repeat", max_retries=20),
    )
    deliveries, trace = Link(cfg, seed=1).run(_packets(40))
    assert sorted({d.seq for d in deliveries}) == list(range(40))
    rows = list(trace.rows())
    by_seq: dict[int, list[dict]] = {}
    for r in rows:
        by_seq.setdefault(r["seq"], []).append(r)
    assert any(len(v) > 1 for v in by_seq.values())
    for attempts in by_seq.values():
        assert [a["attempt"] for a in attempts] == list(range(len(attempts)))
        assert all(a["outcome"] == "retransmitted" for a in attempts[:-1])
        assert attempts[-1]["outcome"] == "delivered"
        for prev, nxt in itertools.pairwise(attempts):
            # the NAK comes back one round trip after the attempt
            assert nxt["t_tx_start_s"] >= prev["t_tx_end_s"] + 2 * 0.25 - 1e-9


def test_selective_repeat_gives_up_after_max_retries() -> None:
    cfg = LinkConfig(
        rate_bps=2400.0,
        loss=LossConfig("bernoulli", p=1.0),
        arq=ArqConfig("selective-repeat", max_retries=2, return_delay_s=1.0),
    )
    deliveries, trace = Link(cfg, seed=1).run(_packets(3))
    assert deliveries == []
    assert trace.counts()["retransmitted"] == 6 and trace.counts()["abandoned"] == 3
    assert trace["attempt"].max() == 2


def test_reliable_first_stage_repeats_only_tagged_packets() -> None:
    cfg = LinkConfig(
        rate_bps=2400.0,
        loss=LossConfig("bernoulli", p=0.4),
        arq=ArqConfig("reliable-first-stage", max_retries=30),
    )
    reliable = [True] * 10 + [False] * 30
    deliveries, trace = Link(cfg, seed=8).run(_packets(40), reliable)
    got = {d.seq for d in deliveries}
    assert set(range(10)) <= got  # the red part always arrives
    assert len(got) < 40  # some green packets are lost for good
    retx = trace["seq"][trace["outcome"] == "retransmitted"]
    assert len(retx) > 0 and retx.max() < 10
    assert trace["reliable"].tolist() == [reliable[s] for s in trace["seq"]]


def test_no_arq_never_repeats() -> None:
    cfg = LinkConfig(rate_bps=2400.0, loss=LossConfig("bernoulli", p=0.5))
    _, trace = Link(cfg, seed=1).run(_packets(50), [True] * 50)
    assert trace.counts()["retransmitted"] == 0 and trace["attempt"].max() == 0


# --- determinism, streaming, trace ---------------------------------------------------------------


def _busy_config() -> LinkConfig:
    return LinkConfig(
        rate_bps=2400.0,
        min_interval_s=2.0,
        delay=DelayConfig(delay_s=0.3, jitter_s=0.2),
        visibility=VisibilityConfig(mode="periodic", duration_s=30.0, period_s=45.0),
        loss=LossConfig("gilbert-elliott", p=0.1, r=0.3, loss_good=0.05, loss_bad=0.8),
        arq=ArqConfig("selective-repeat", max_retries=2),
    )


def test_same_seed_same_trace_byte_for_byte() -> None:
    pk = _packets(60)
    a = Link(_busy_config(), seed=42).run(pk)
    b = Link(_busy_config(), seed=42).run(pk)
    assert a.trace.to_csv() == b.trace.to_csv()
    assert a.deliveries == b.deliveries
    link = Link(_busy_config(), seed=np.random.SeedSequence(42))
    assert link.run(pk).trace.digest() == link.run(pk).trace.digest()  # runs are repeatable
    assert link.run(pk).trace.digest() == a.trace.digest()  # int and SeedSequence agree


def test_different_seeds_different_traces() -> None:
    pk = _packets(60)
    digests = {Link(_busy_config(), seed=s).run(pk).trace.digest() for s in range(5)}
    assert len(digests) == 5


def test_stream_yields_in_arrival_order_before_the_end() -> None:
    pk = _packets(60)
    expected = Link(_busy_config(), seed=3).run(pk)
    run = Link(_busy_config(), seed=3).stream(pk)
    it = iter(run)
    first = next(it)
    with pytest.raises(RuntimeError, match="only after iterating"):
        _ = run.trace  # the simulation is still going
    rest = list(it)
    assert [first, *rest] == expected.deliveries
    assert run.trace.to_csv() == expected.trace.to_csv()
    times = [d.t_arrival_s for d in [first, *rest]]
    assert times == sorted(times)


def test_trace_columns_and_csv() -> None:
    _, trace = Link(_busy_config(), seed=1).run(_packets(20))
    assert trace.columns[:8] == (
        "seq",
        "attempt",
        "reliable",
        "size_bytes",
        "t_enqueue_s",
        "t_tx_start_s",
        "t_tx_end_s",
        "t_arrival_s",
    )
    assert set(trace["outcome"]) <= set(OUTCOMES)
    assert sum(trace.counts().values()) == len(trace)
    lines = trace.to_csv().splitlines()
    assert lines[0].split(",") == list(trace.columns)
    assert len(lines) == len(trace) + 1
    lost_row = next(r for r in trace.rows() if r["outcome"] in ("lost", "retransmitted"))
    assert math.isnan(lost_row["t_arrival_s"])


def test_empty_input() -> None:
    deliveries, trace = Link(LinkConfig(), seed=0).run([])
    assert deliveries == [] and len(trace) == 0 and trace.to_csv().count("\n") == 1


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda: LinkConfig(rate_bps=-2400.0), r"channel\.rate_bps = -2400\.0 .*allowed: > 0"),
        (lambda: LinkConfig(rate_bps=0), r"channel\.rate_bps.*> 0"),
        (lambda: LinkConfig(rate_bps="fast"), r"channel\.rate_bps = 'fast': expected a number"),
        (lambda: LinkConfig(queue_limit_packets=0), r"channel\.queue_limit_packets = 0.*>= 1"),
        (lambda: LinkConfig(min_interval_s=-1.0), r"channel\.min_interval_s.*\[0, 86400\]"),
        (lambda: LossConfig("bernoulli", p=1.5), r"channel\.loss\.p = 1\.5 .*\[0, 1\]"),
        (lambda: LossConfig("bernoulli", p=-0.1), r"channel\.loss\.p = -0\.1 .*\[0, 1\]"),
        (lambda: LossConfig("gilbert-elliott", r=2), r"channel\.loss\.r = 2 .*\[0, 1\]"),
        (lambda: LossConfig(loss_bad=1.01), r"channel\.loss\.loss_bad.*\[0, 1\]"),
        (lambda: LossConfig("burst"), r"channel\.loss\.model = 'burst': allowed values are"),
        (
            lambda: DelayConfig(elevation_deg=91.0),
            r"channel\.delay\.elevation_deg = 91\.0 .*\[0, 90\]",
        ),
        (
            lambda: DelayConfig(elevation_deg=-5.0),
            r"channel\.delay\.elevation_deg = -5\.0 .*\[0, 90\]",
        ),
        (lambda: DelayConfig(max_elevation_deg=100.0), r"max_elevation_deg.*\[0, 90\]"),
        (lambda: DelayConfig(jitter_s=-0.1), r"channel\.delay\.jitter_s.*\[0, 86400\]"),
        (lambda: DelayConfig(hops=0), r"channel\.delay\.hops = 0.*\[1, 16\]"),
        (lambda: DelayConfig(mode="orbit"), r"channel\.delay\.mode = 'orbit'.*'fixed'"),
        (
            lambda: VisibilityConfig(mode="windows", windows_s=(), outside="drop"),
            r"channel\.visibility\.windows_s is empty.*outside = 'drop'.*at least one",
        ),
        (
            lambda: VisibilityConfig(mode="windows", windows_s=()),
            r"channel\.visibility\.windows_s is empty",
        ),
        (
            lambda: VisibilityConfig(mode="windows", windows_s=((5.0, 1.0),)),
            r"windows_s\[0\]\[1\] = 1\.0 .*> 5",
        ),
        (
            lambda: VisibilityConfig(mode="windows", windows_s=((0.0, 10.0), (5.0, 20.0))),
            r"windows_s\[1\].*non-overlapping",
        ),
        (lambda: VisibilityConfig(mode="periodic"), r"channel\.visibility\.period_s is missing"),
        (
            lambda: VisibilityConfig(mode="periodic", period_s=10.0, duration_s=20.0),
            r"channel\.visibility\.duration_s = 20\.0 .*\(0, 10\]",
        ),
        (
            lambda: LinkConfig(visibility=VisibilityConfig(mode="periodic", period_s=10.0)),
            r"channel\.visibility\.duration_s is missing",
        ),
        (lambda: VisibilityConfig(outside="queue"), r"outside = 'queue'.*'wait', 'drop'"),
        (lambda: ArqConfig("go-back-n"), r"channel\.arq\.mode = 'go-back-n'"),
        (lambda: ArqConfig(max_retries=-1), r"channel\.arq\.max_retries = -1.*\[0, 1000\]"),
        (lambda: ArqConfig(return_delay_s=-1.0), r"channel\.arq\.return_delay_s"),
        (
            lambda: LinkConfig(loss=LossConfig("bit-errors")),
            r"channel\.loss\.model = 'bit-errors' needs a link budget",
        ),
        (
            lambda: LinkConfig(delay=DelayConfig(elevation_mode="pass")),
            r"elevation_mode = 'pass' needs passes",
        ),
    ],
)
def test_invalid_parameters_name_the_field_and_allowed_range(make, pattern: str) -> None:
    with pytest.raises(ChannelConfigError, match=pattern):
        make()


def test_invalid_run_inputs() -> None:
    link = Link(LinkConfig(max_message_bytes=70), seed=0)
    with pytest.raises(ChannelConfigError, match=r"packet 1 is 71 bytes; channel\.max_message"):
        link.run([bytes(70), bytes(71)])
    with pytest.raises(ChannelConfigError, match="reliable has 1 flags for 2 packets"):
        link.run([bytes(1), bytes(1)], [True])
    with pytest.raises(ChannelConfigError, match="non-decreasing"):
        link.run([bytes(1), bytes(1)], enqueue_times_s=[2.0, 1.0])
    with pytest.raises(ChannelConfigError, match=r"seed = -1 .*>= 0"):
        Link(LinkConfig(), seed=-1)
    short = LinkConfig(
        rate_bps=100.0, visibility=VisibilityConfig(mode="windows", windows_s=((0.0, 1.0),))
    )
    with pytest.raises(ChannelConfigError, match="longer than the longest visibility window"):
        Link(short, seed=0).run([bytes(100)])


@settings(max_examples=100, deadline=None)
@given(p=st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_probabilities_are_checked(p: float) -> None:
    if 0.0 <= p <= 1.0:
        assert LossConfig("bernoulli", p=p).p == p
    else:
        with pytest.raises(ChannelConfigError, match=r"channel\.loss\.p .*\[0, 1\]"):
            LossConfig("bernoulli", p=p)


@settings(max_examples=100, deadline=None)
@given(e=st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_elevations_are_checked(e: float) -> None:
    if 0.0 <= e <= 90.0:
        DelayConfig(elevation_deg=e)
    else:
        with pytest.raises(ChannelConfigError, match=r"elevation_deg .*\[0, 90\]"):
            DelayConfig(elevation_deg=e)


# --- time-stepped chains, service latency and loss, scheduling ---------------------------------


def test_timed_chain_relaxes_towards_its_stationary_state_as_time_passes() -> None:
    from satlink.channel.loss import TimedChain

    rng = np.random.default_rng(5)
    p, r = 0.05, 0.15
    pi, lam = p / (p + r), 1.0 - p - r
    for steps in (1.0, 5.0, 40.0):
        bad_after = 0
        n = 20_000
        for _ in range(n):
            ch = TimedChain(p, r, u0=0.0)  # starts bad
            bad_after += ch.advance(steps, float(rng.random()))
        want = pi + (1 - pi) * lam**steps
        assert abs(bad_after / n - want) < 4 * math.sqrt(want * (1 - want) / n) + 1e-3


def test_gilbert_elliott_in_time_heals_over_a_long_gap() -> None:
    # one message per 100 steps: consecutive states are nearly independent, unlike per message
    def burstiness(interval_s: float) -> float:
        cfg = LinkConfig(
            rate_bps=1e6,
            min_interval_s=interval_s,
            loss=LossConfig("gilbert-elliott", p=0.02, r=0.05, loss_bad=1.0, step_s=1.0),
        )
        _, trace = Link(cfg, seed=3).run(_packets(3000, 10))
        lost = np.isnan(trace["t_arrival_s"])
        return float(np.mean(lost[1:][lost[:-1]]))  # P(lost | previous lost)

    assert burstiness(1.0) > 0.9 and burstiness(100.0) < 0.5


def test_service_latency_bounds_the_end_to_end_delay() -> None:
    cfg = LinkConfig(
        rate_bps=2400.0,
        delay=DelayConfig(
            mode="geometry",
            altitude_km=781.0,
            elevation_deg=30.0,
            hops=2,
            service_latency_min_s=5.0,
            service_latency_max_s=20.0,
        ),
    )
    _, trace = Link(cfg, seed=1).run(_packets(500, 340))
    e2e = trace["t_arrival_s"] - trace["t_tx_start_s"]
    assert e2e.min() >= 5.0 and e2e.max() <= 20.0 and e2e.max() - e2e.min() > 10.0
    with pytest.raises(ChannelConfigError, match="go together"):
        DelayConfig(service_latency_min_s=5.0)


def test_service_loss_adds_to_the_budget_loss() -> None:
    budget = BudgetConfig(freq_hz=1.6e9, eirp_dbw=30.0, gt_dbk=0.0, rate_bps=2400.0)
    cfg = LinkConfig(loss=LossConfig("budget-per", service_loss_p=0.2), budget=budget)
    _, trace = Link(cfg, seed=2).run(_packets(2000, 100))
    lost = float(np.isnan(trace["t_arrival_s"]).mean())
    assert np.all(trace["per"] == pytest.approx(0.2, abs=1e-6))
    assert abs(lost - 0.2) < 4 * math.sqrt(0.2 * 0.8 / 2000)


def test_start_offset_and_margin_policy_narrow_the_pass_but_keep_its_geometry() -> None:
    from satlink.linkbudget import budget_over_pass
    from satlink.scenario import load_scenario

    s = load_scenario("leo-pass-budget", ["channel.visibility.min_margin_db=-50"])
    base = budget_over_pass(s.budget, step_s=10.0)
    for extra in (
        ["channel.visibility.start_offset_s=150"],
        ["channel.visibility.min_margin_db=3"],
    ):
        sc = s.with_overrides(extra)
        _, trace = sc.build_link(0).run(_packets(40))
        rows = [
            r for r in trace.rows() if r["outcome"] == "delivered" or r["outcome"] == "corrupted"
        ]
        assert rows
        for r in rows:  # the elevation at t from AOS is the budget table's at that t
            want = np.interp(
                r["t_tx_end_s"], [b["t_s"] for b in base], [b["elevation_deg"] for b in base]
            )
            assert r["elevation_deg"] == pytest.approx(want, abs=0.2)
        if "start_offset_s" in extra[0]:
            assert min(r["t_tx_start_s"] for r in rows) >= 150.0
        else:
            margins = [r["ebn0_db"] - s.budget.required_ebn0() for r in rows]
            assert min(margins) >= 3.0 - 1e-6


def test_a_margin_the_geometry_never_reaches_is_an_error() -> None:
    from satlink.scenario import ScenarioError, load_scenario

    s = load_scenario("leo-pass-budget", ["channel.visibility.min_margin_db=30"])
    with pytest.raises(ChannelConfigError, match="never reaches"):
        s.build_link(0).run(_packets(1))
    with pytest.raises(ScenarioError, match="start_offset_s"):
        load_scenario("leo-pass-budget", ["channel.visibility.start_offset_s=-1"])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.0, 90.0), min_size=2, max_size=20),
    st.floats(-10.0, 200.0),
)
def test_track_interpolation_stays_between_neighbouring_samples(els: list[float], t: float) -> None:
    from satlink.channel import GeometryTrack

    times = tuple(10.0 * i for i in range(len(els)))
    ranges = tuple(600.0 + 10.0 * e for e in els)
    track = GeometryTrack(times, tuple(els), ranges, ((0.0, times[-1]),))
    el, d = track.at(t)
    i = min(max(int(t // 10.0), 0), len(els) - 1)
    j = min(i + 1, len(els) - 1)
    lo, hi = sorted((els[i], els[j]))
    assert lo - 1e-9 <= el <= hi + 1e-9
    assert d == pytest.approx(600.0 + 10.0 * el)
