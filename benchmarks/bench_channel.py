"""Benchmark: simulated packets per second through the full SimPy link, against bare SimPy.

Run:  python benchmarks/bench_channel.py [--packets 100000] [--repeats 5] [--out FILE.md]

"Full link" = bounded transmit queue, serialization at rate_bps, geometry propagation delay
with jitter, Gilbert-Elliott loss, the per-event trace (built into numpy columns, Eb/N0 and PER
included) and the
deliveries list in arrival order. No decoding. Each figure is the median of ``--repeats`` runs.

Baselines measured in the same process:

* ``simpy, one process per packet``: a trivial process per packet that yields one timeout
  (the issue's reference, about 90,000/s on this machine);
* ``simpy, one timeout per packet``: a single process yielding one timeout per packet, the
  floor of any SimPy design that advances simulated time per packet.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import simpy

from satlink.channel import (
    ArqConfig,
    DelayConfig,
    Link,
    LinkConfig,
    LossConfig,
    ReturnLinkConfig,
    VisibilityConfig,
)
from satlink.scenario import load_scenario

BAR_PACKETS_PER_S = 50_000


def simpy_process_per_packet(n: int) -> None:
    env = simpy.Environment()

    def packet(env: simpy.Environment) -> simpy.events.ProcessGenerator:
        yield env.timeout(0.1)

    def source(env: simpy.Environment) -> simpy.events.ProcessGenerator:
        for _ in range(n):
            env.process(packet(env))
            yield env.timeout(0.01)

    env.process(source(env))
    env.run()


def simpy_timeout_per_packet(n: int) -> None:
    env = simpy.Environment()

    def sender(env: simpy.Environment) -> simpy.events.ProcessGenerator:
        for _ in range(n):
            yield env.timeout(0.1)

    env.process(sender(env))
    env.run()


FULL_LINK = LinkConfig(
    rate_bps=2400.0,
    queue_limit_packets=1_000_000,
    delay=DelayConfig(
        mode="geometry", altitude_km=35_786.0, elevation_deg=45.0, hops=2, jitter_s=0.01
    ),
    loss=LossConfig("gilbert-elliott", p=0.05, r=0.3, loss_good=0.01, loss_bad=0.7),
)
VARIANTS: dict[str, LinkConfig] = {
    "full link: queue, rate, geometry delay + jitter, Gilbert-Elliott loss, trace": FULL_LINK,
    "  + selective-repeat ARQ (max 3 retries)": LinkConfig(
        rate_bps=FULL_LINK.rate_bps,
        queue_limit_packets=FULL_LINK.queue_limit_packets,
        delay=FULL_LINK.delay,
        loss=FULL_LINK.loss,
        arq=ArqConfig("selective-repeat", max_retries=3),
    ),
    "  + ARQ over a return link of messages (caps, interval, 5% loss), window 64": LinkConfig(
        rate_bps=FULL_LINK.rate_bps,
        queue_limit_packets=FULL_LINK.queue_limit_packets,
        delay=FULL_LINK.delay,
        loss=FULL_LINK.loss,
        arq=ArqConfig("selective-repeat", max_retries=3, window_messages=64),
        return_link=ReturnLinkConfig(
            mode="messages", min_interval_s=0.5, loss_p=0.05, entries_per_message=32
        ),
    ),
    "  Gilbert-Elliott stepping in time (step_s = 1.2) instead of per message": LinkConfig(
        rate_bps=FULL_LINK.rate_bps,
        queue_limit_packets=FULL_LINK.queue_limit_packets,
        delay=FULL_LINK.delay,
        loss=LossConfig("gilbert-elliott", p=0.05, r=0.3, loss_good=0.01, loss_bad=0.7, step_s=1.2),
    ),
    "  + periodic visibility windows (wait)": LinkConfig(
        rate_bps=FULL_LINK.rate_bps,
        queue_limit_packets=FULL_LINK.queue_limit_packets,
        delay=FULL_LINK.delay,
        loss=FULL_LINK.loss,
        visibility=VisibilityConfig(mode="periodic", duration_s=420.0, period_s=600.0),
    ),
}


def median_rates(cases: list[tuple[str, Callable[[], object], int]], repeats: int) -> list[float]:
    """Median packets/s per case; the repeats go round-robin over the cases, so a change in
    background load (this machine also trains a model) hits every case alike."""
    rates: list[list[float]] = [[] for _ in cases]
    for _ in range(repeats):
        for i, (_, fn, n) in enumerate(cases):
            t = time.perf_counter()
            fn()
            rates[i].append(n / (time.perf_counter() - t))
    return [statistics.median(r) for r in rates]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", help="also write the results as Markdown to this file")
    args = ap.parse_args(argv)
    n, k = args.packets, args.repeats
    load_before = os.getloadavg()[0]  # other work on the machine moves every figure
    packets = [bytes(360)] * n

    leo = load_scenario("leo-pass-budget").build_link(seed=1)
    n_leo = min(n, 20_000)  # ~50 passes of ~395 packets, waiting in between
    cases: list[tuple[str, Callable[[], object], int]] = [
        ("simpy, one process per packet (reference)", lambda: simpy_process_per_packet(n), n),
        ("simpy, one timeout per packet", lambda: simpy_timeout_per_packet(n), n),
    ]
    for name, cfg in VARIANTS.items():
        cases.append((name, lambda cfg=cfg: Link(cfg, seed=1).run(packets), n))
    cases.append(
        (
            "preset leo-pass-budget (pass geometry, bit-error injection)",
            lambda: leo.run([bytes(360)] * n_leo),
            n_leo,
        )
    )
    tle = load_scenario("leo-tle-pass", ["channel.visibility.min_margin_db=-50"])
    tle_link = tle.build_link(seed=1)
    n_tle = min(n, 2_000)  # a day of passes holds ~2,300 messages
    cases.append(
        (
            "preset leo-tle-pass (SGP4 track, bit errors; margin policy off)",
            lambda: tle_link.run([bytes(360)] * n_tle),
            n_tle,
        )
    )
    rates = median_rates(cases, k)
    results = [(name, rate) for (name, _, _), rate in zip(cases, rates, strict=True)]

    reference = results[0][1]
    full = results[2][1]
    lines = [
        f"packets per run: {n:,}; median of {k} runs, round-robin; Python "
        f"{platform.python_version()}; load average before/after: {load_before:.1f}/"
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
        "",
        "| what | packets/s (median) | vs. simpy process-per-packet |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {name.strip()} | {rate:,.0f} | {rate / reference:.2f}x |" for name, rate in results
    ]
    verdict = "PASS" if full >= BAR_PACKETS_PER_S else "FAIL"
    lines += ["", f"bar: full link >= {BAR_PACKETS_PER_S:,} packets/s: {verdict} ({full:,.0f})"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
