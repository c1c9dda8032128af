"""Packet-layer benchmark: packetize+parse throughput, CRC in C vs pure Python, efficiency,
and bit-flip rejection counts.

    python benchmarks/bench_packets.py            # about half a minute on a 2-core machine
    python benchmarks/bench_packets.py --runs 3   # quicker, noisier

Prints a markdown section (the numbers in docs/BENCHMARKS.md come from it). All
inputs come from fixed seeds; only the timings vary between runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from codec.code import ProgressiveCode
from satlink import packets as pk

SEED = 2024


def pure_python_crc32c() -> Callable[[bytes], int]:
    """crcmod's CRC-32C as it runs without its C extension (the fallback users may get)."""
    saved = sys.modules.get("crcmod._crcfunext")
    sys.modules["crcmod._crcfunext"] = None  # type: ignore[assignment]  # makes the import fail
    try:
        spec = importlib.util.find_spec("crcmod.crcmod")
        assert spec is not None and spec.origin is not None
        pure_spec = importlib.util.spec_from_file_location("crcmod._bench_pure", spec.origin)
        assert pure_spec is not None and pure_spec.loader is not None
        module = importlib.util.module_from_spec(pure_spec)
        pure_spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["crcmod._crcfunext"]
        else:
            sys.modules["crcmod._crcfunext"] = saved
    assert module._usingExtension is False
    # The parameters of crcmod.predefined "crc-32c".
    fun = module.mkCrcFun(0x11EDC6F41, initCrc=0, rev=True, xorOut=0xFFFFFFFF)
    assert fun(b"123456789") == 0xE3069283
    return fun


def rates_per_s(
    cases: dict[str, tuple[Callable[[], object], int]], runs: int, min_time_s: float
) -> dict[str, list[tuple[float, float]]]:
    """Items per second of each case ``name: (fn, items per call)``: one ``(per wall-clock
    second, per CPU second of this process)`` pair per run.

    Runs take turns (case A run 1, case B run 1, ..., case A run 2, ...) so that a burst of
    load from other processes hits every case alike. The CPU-second rate is what an otherwise
    idle machine would show; the wall-clock rate is what this one showed, load included.
    """
    for fn, _ in cases.values():
        fn()  # warm caches (position orders, unpack plans)
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, (fn, items) in cases.items():
            loops, start, cpu = 0, time.perf_counter(), time.process_time()
            while True:
                fn()
                loops += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_time_s:
                    break
            used = max(time.process_time() - cpu, 1e-9)
            rates[name].append((loops * items / elapsed, loops * items / used))
    return rates


def bit_flip_trials(packets: list[bytes], trials: int, seed: int) -> int:
    """Flip 1-3 distinct random bits per trial; return how many flipped packets were rejected."""
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(packets), trials)
    nflips = rng.integers(1, 4, trials)
    u = rng.random((trials, 3))
    rejected = 0
    for t in range(trials):
        packet = packets[which[t]]
        nbits = len(packet) * 8
        bits = {int(v * nbits) for v in u[t, : nflips[t]]}
        while len(bits) < nflips[t]:
            bits.add((max(bits) + 1) % nbits)
        flipped = bytearray(packet)
        for bit in bits:
            flipped[bit >> 3] ^= 0x80 >> (bit & 7)
        try:
            pk.parse_packet(flipped)
        except pk.PacketCRCError:
            rejected += 1
    return rejected


def undetected_patterns(packet_size_bytes: int) -> dict[int, int]:
    """Exhaustively count undetected 1-, 2-, 3- and 4-bit error patterns of a packet.

    CRC-32C is linear: an error pattern escapes iff the XOR of its bits' syndromes is zero.
    Singles: a zero syndrome; pairs: equal syndromes; triples: a pair XOR equal to a single;
    quadruples: two disjoint pairs with equal XOR.
    """
    body = packet_size_bytes - pk.CRC_SIZE_BYTES
    zero = bytes(body)
    base = pk.crc32c(zero)
    syn = np.empty(packet_size_bytes * 8, dtype=np.uint32)
    for bit in range(body * 8):
        flipped = bytearray(zero)
        flipped[bit >> 3] ^= 0x80 >> (bit & 7)
        syn[bit] = pk.crc32c(flipped) ^ base
    syn[body * 8 :] = 1 << np.arange(31, -1, -1, dtype=np.uint32)
    singles = int((syn == 0).sum())
    doubles = syn.size - len(np.unique(syn))
    i, j = np.triu_indices(syn.size, 1)
    pairs = syn[i] ^ syn[j]
    del i, j
    triples = int(np.isin(pairs, syn).sum())
    # Two pairs with equal XOR: if they shared a bit, the other two would be an undetected
    # double; otherwise the four bits escape, and each such pattern shows up as 3 pairings.
    _, counts = np.unique(pairs, return_counts=True)
    quads = int((counts * (counts - 1) // 2).sum()) // 3
    return {1: singles, 2: doubles, 3: triples, 4: quads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per figure (median)")
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds per timed run")
    parser.add_argument("--trials", type=int, default=100_000, help="bit-flip trials")
    args = parser.parse_args()
    pk.require_c_crc()

    rng = np.random.default_rng(SEED)
    # A 512 x 768 px image at the codec's 1/16 scale: 5 stages of 32 x 48 10-bit indices.
    code = ProgressiveCode(rng.integers(0, 1024, (5, 32, 48), dtype=np.uint16), (512, 768), 10, 1)
    packets = pk.packetize(code)
    n = len(packets)

    def round_trip() -> None:
        for p in pk.packetize(code):
            pk.parse_packet(p)

    def round_trip_batch() -> None:
        pk.parse_packets(pk.packetize(code))

    def parse_all() -> None:
        for p in packets:
            pk.parse_packet(p)

    def reassemble_all() -> None:
        pk.reassemble(packets)

    runs, min_t = args.runs, args.min_time
    body = packets[0][:-4]
    pure = pure_python_crc32c()
    r = rates_per_s(
        {
            "both_batch": (round_trip_batch, n),
            "both": (round_trip, n),
            "make": (lambda: pk.packetize(code), n),
            "parse_batch": (lambda: pk.parse_packets(packets), n),
            "parse": (parse_all, n),
            "reasm": (reassemble_all, n),
            "c_crc": (lambda: pk.crc32c(body), 1),
            "py_crc": (lambda: pure(body), 1),
        },
        runs,
        min_t,
    )
    # The whole round trip with the pure-Python CRC, for comparison: every packet module calls
    # the CRC through this one attribute.
    saved = pk.crc.crc32c_function
    pk.crc.crc32c_function = pure
    try:
        r |= rates_per_s({"both_py": (round_trip_batch, n)}, max(3, runs // 2), min_t)
    finally:
        pk.crc.crc32c_function = saved
    both_batch, both, make, parse_batch, parse, reasm, c_crc, py_crc, both_py = (
        r[k]
        for k in (
            "both_batch", "both", "make", "parse_batch", "parse", "reasm", "c_crc", "py_crc",
            "both_py",
        )
    )  # fmt: skip

    flip_packets = (
        pk.packetize(code, 360, interleave=True)
        + pk.packetize(code, 340)
        + pk.packetize(code, 70)
        + pk.packetize_bytes(bytes(rng.integers(0, 256, 5000, dtype=np.uint8)), 360)
    )
    start = time.perf_counter()
    rejected = bit_flip_trials(flip_packets, args.trials, SEED)
    flip_s = time.perf_counter() - start
    start = time.perf_counter()
    escaped = undetected_patterns(360)
    exhaustive_s = time.perf_counter() - start

    def wall(rates: list[tuple[float, float]]) -> list[float]:
        return [w for w, _ in rates]

    def cpu(rates: list[tuple[float, float]]) -> list[float]:
        return [c for _, c in rates]

    med = statistics.median
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print("## Packet layer (`satlink.packets`)\n")
    print(f"Command: `python benchmarks/bench_packets.py --runs {runs}`; Python "
          f"{platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"load average {load:.1f} at the end; median of {runs} runs of >= {min_t} s "
          "each.\n")  # fmt: skip
    print("| measure (360-byte packets, 5 x 32 x 48 10-bit code = 29 packets) | packets/s, "
          "wall clock (best) | packets per CPU second |")  # fmt: skip
    print("|---|---:|---:|")
    for label, rates in [
        ("packetize + `parse_packets` (batch of one message), CRC in C", both_batch),
        ("packetize + `parse_packet` one at a time, CRC in C", both),
        ("packetize only", make),
        ("`parse_packets` only", parse_batch),
        ("`parse_packet` only", parse),
        ("`reassemble` (batch parse + place)", reasm),
        ("packetize + `parse_packets`, pure-Python CRC", both_py),
    ]:
        print(f"| {label} | {med(wall(rates)):,.0f} ({max(wall(rates)):,.0f}) | "
              f"{med(cpu(rates)):,.0f} |")  # fmt: skip
    print("\n| CRC-32C over one 356-byte packet body | CRCs per CPU second |")
    print("|---|---:|")
    print(f"| crcmod C extension | {med(cpu(c_crc)):,.0f} |")
    print(f"| crcmod pure Python | {med(cpu(py_crc)):,.0f} |")
    print(f"| ratio C / Python | {med(cpu(c_crc)) / med(cpu(py_crc)):.0f}x |")
    print("\n| packet size | indices per packet | payload efficiency |")
    print("|---:|---:|---:|")
    for size in (360, 340, 70):
        print(f"| {size} B | {pk.index_capacity(size)} | {pk.payload_efficiency(size):.2%} |")
    air = pk.bytes_for_stages((32, 48), 1, packet_size_bytes=360, mtu_bytes=70)
    per = pk.packets_per_stage((32, 48))
    frag_eff = per * pk.index_capacity(360) * 10 / (air * 8)
    print(f"| 360 B in {pk.fragment_count(360, 70)} fragments of <= 70 B | "
          f"{pk.index_capacity(360)} | {frag_eff:.2%} |")  # fmt: skip
    whole = code.num_indices * 10 / (pk.bytes_for_stages(code, 5) * 8)
    print(f"\nWhole message (5 x 32 x 48: {pk.packets_for_stages(code, 5)} packets, the last "
          f"partly empty): {whole:.2%} at 360 B.\n")  # fmt: skip
    print(f"Bit flips: {rejected:,} of {args.trials:,} packets with 1-3 random flipped bits "
          f"rejected ({len(flip_packets)} packets of 360/340/70 B, indices and bytes kinds; "
          f"{flip_s:.1f} s).\n")  # fmt: skip
    nbits = 360 * 8
    counts = {1: nbits, 2: nbits * (nbits - 1) // 2, 3: nbits * (nbits - 1) * (nbits - 2) // 6}
    print(f"Exhaustive check of a 360-byte packet ({exhaustive_s:.1f} s): undetected 1-bit "
          f"{escaped[1]} of {counts[1]:,}, 2-bit {escaped[2]} of {counts[2]:,}, 3-bit "
          f"{escaped[3]} of {counts[3]:,}, 4-bit {escaped[4]} (all "
          f"{nbits * (nbits - 1) * (nbits - 2) * (nbits - 3) // 24:,} patterns).")  # fmt: skip
    print()
    for label, rates in (("batch", both_batch), ("one at a time", both)):
        for clock, values in (("wall clock", wall(rates)), ("per CPU second", cpu(rates))):
            verdict = "met" if med(values) >= 50_000 else "NOT met"
            print(f"Bar >= 50,000 packets/s packetize+parse, {label}, {clock}: {verdict} "
                  f"(median {med(values):,.0f})  ")  # fmt: skip


if __name__ == "__main__":
    main()
