"""The ARQ's return link: acknowledgements as messages with their own caps, interval, delay and
loss; the window; abandoned messages counted so that the counts add up to the trace."""

from __future__ import annotations

import itertools

import numpy as np

from satlink.channel import ArqConfig, DelayConfig, Link, LinkConfig, LossConfig


def _packets(n: int, size: int = 360) -> list[bytes]:
    rng = np.random.default_rng(1234)
    return [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for _ in range(n)]


def _arq_cfg(**rl: object) -> LinkConfig:
    from satlink.channel import ReturnLinkConfig

    return LinkConfig(
        rate_bps=2400.0,
        delay=DelayConfig(delay_s=0.25),
        loss=LossConfig("bernoulli", p=0.3),
        arq=ArqConfig("selective-repeat", max_retries=2, window_messages=rl.pop("window", None)),
        return_link=ReturnLinkConfig(mode="messages", **rl),
    )


def test_abandoned_messages_are_counted_and_the_counts_add_up() -> None:
    _, trace = Link(_arq_cfg(rate_bps=2400.0, loss_p=0.2, min_interval_s=1.0), seed=4).run(
        _packets(300)
    )
    c = trace.counts()
    assert c["abandoned"] > 0 and c["retransmitted"] > 0
    first = trace["attempt"] == 0
    sent = int(first.sum())
    assert sent == 300 == c["delivered"] + c["lost"] + c["corrupted"] + c["abandoned"]
    assert len(trace) == sent + c["retransmitted"]
    # every abandoned message was tried max_retries + 1 times and never arrived
    for seq in trace["seq"][trace["outcome"] == "abandoned"]:
        tries = trace["outcome"][trace["seq"] == seq]
        assert list(tries) == ["retransmitted", "retransmitted", "abandoned"]


def test_return_messages_respect_their_interval_and_carry_several_entries() -> None:
    link = Link(_arq_cfg(min_interval_s=5.0, entries_per_message=8, loss_p=0.3), seed=1)
    _, trace = link.run(_packets(200))
    ev = trace.return_events
    starts = [e["t_tx_start_s"] for e in ev]
    assert np.all(np.diff(starts) >= 5.0 - 1e-9)
    assert max(e["entries"] for e in ev) == 8 and any(e["outcome"] == "lost" for e in ev)
    # a NAK comes back only over the return link: a repeat starts after a return message
    # that arrived, never one round trip after the failure by itself
    arrived = sorted(e["t_arrival_s"] for e in ev if e["outcome"] == "delivered")
    for t in trace["t_tx_start_s"][trace["attempt"] > 0]:
        assert any(a <= t + 1e-9 for a in arrived)


def test_a_lossy_return_link_slows_the_repeats() -> None:
    def mean_repeat_wait_s(loss_p: float) -> float:
        _, trace = Link(_arq_cfg(min_interval_s=2.0, loss_p=loss_p), seed=7).run(_packets(300))
        ends = {(r["seq"], r["attempt"]): r["t_tx_end_s"] for r in trace.rows()}
        waits = [
            r["t_tx_start_s"] - ends[r["seq"], r["attempt"] - 1]
            for r in trace.rows()
            if r["attempt"] > 0
        ]
        return float(np.mean(waits))

    assert mean_repeat_wait_s(0.6) > 1.5 * mean_repeat_wait_s(0.0)


def test_the_arq_window_limits_unacknowledged_messages() -> None:
    cfg = _arq_cfg(window=1, rate_bps=1e6, delay_s=0.5)
    _, trace = Link(cfg, seed=2).run(_packets(20))
    rows = sorted(trace.rows(), key=lambda r: r["t_tx_start_s"])
    for a, b in itertools.pairwise(rows):
        # with a window of one the next message waits for the previous one's report:
        # its copy's arrival (or would-be arrival) plus the return trip
        assert b["t_tx_start_s"] >= a["t_tx_end_s"] + a["delay_s"] + 0.5 - 1e-9


def test_a_replay_reports_abandoned_packets_and_its_counts_match_the_trace(
    tiny, small_image
) -> None:
    from satlink.replay import replay

    res = replay(
        "geo-burst-arq",
        small_image,
        seed=0,
        codec=tiny,
        overrides=["channel.arq.max_retries=1", "channel.loss.r=0.02", "channel.loss.p=0.2"],
    )
    c = res.summary["counts"]
    outcomes = [r["outcome"] for r in res.rows]
    assert c["abandoned"] > 0 and c["abandoned"] == outcomes.count("abandoned")
    assert c["sent"] == c["delivered"] + c["lost"] + c["corrupted"] + c["abandoned"]
    assert c["sent"] == sum(r["attempt"] == 0 for r in res.rows) == c["wire_messages"]
    assert c["transmissions"] == c["sent"] + c["retransmitted"] == len(res.rows)
    assert "abandoned" in res.summary_table()
