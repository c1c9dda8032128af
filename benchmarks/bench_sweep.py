"""Throughput of a Monte Carlo sweep, with and without the decode cache.

    python benchmarks/bench_sweep.py                       # the issue's bar: 1,000 replications
    python benchmarks/bench_sweep.py --replications 20 --baseline-replications 20 --runs 1  # smoke
    python benchmarks/bench_sweep.py --dask --replications 64 --runs 3   # Dask LocalCluster vs pool

One replication is one replay of a 256×256 image over a lossy preset (default ``geo-burst-arq``:
Gilbert-Elliott burst loss, 23% long-run, repaired by selective-repeat ARQ), with a preview decoded
and scored (PSNR, MS-SSIM) after every new packet. The sweep runs on a local process pool of
``--workers`` processes (default 2) and writes its full output folder (per-replication files,
results/replications/summary CSVs, band plots) into a temporary directory. Each timing is the
wall time of the whole ``satlink.sweep.sweep()`` call: pool start-up, model loading, encoding,
replications and files.

The baseline is the same sweep with ``decode_cache=False`` (every preview decoded and scored
afresh), measured in the same run. It is much slower, so by default it runs on fewer replications
(``--baseline-replications``, default 200) and the two are compared as replications per second.

Bar (issue 6): 1,000 replications in ≤ 3 minutes on the project's 2-core machine with 2 workers.
Prints a Markdown table (and writes it to ``--out`` if given).

``--dask`` instead compares executors in one run: the same sweep on the local process pool
(``--workers`` processes) and on a Dask ``LocalCluster`` with worker processes (``--workers``
workers, one thread each), alternating, ``--runs`` times each. The figure is the wall time per
replication after start-up (the replication phase: ``run_s - prepare_s``, divided by the
replications), median over the runs, and its Dask/pool ratio. Bar (issue 16): Dask within 1.3×.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

BAR_S = 180.0


def image_256(path: Path | None) -> np.ndarray:
    """The benchmark image: ``path`` resized to 256×256, or scikit-image's astronaut."""
    from PIL import Image

    if path is not None:
        im = Image.open(path).convert("RGB")
    else:
        from skimage import data

        im = Image.fromarray(data.astronaut())
    return np.asarray(im.resize((256, 256), Image.Resampling.BICUBIC))


def timed_sweep(
    scenario: str,
    image: np.ndarray,
    replications: int,
    workers: int,
    decode_cache: bool,
    root_seed: int,
    scheduler: str | None = None,
) -> dict:
    from satlink.sweep import sweep

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = sweep(
            scenario,
            seeds=replications,
            images={"bench256": image},
            workers=workers,
            scheduler=scheduler,
            out_dir=Path(tmp) / "sweep",
            root_seed=root_seed,
            decode_cache=decode_cache,
        )
        wall_s = time.perf_counter() - t0
    s = result.stats
    previews = sum(r["previews"] for r in result.replications)
    # After the first phase (pool start-up, model load, encoding): the replications alone.
    steady_s = s["run_s"] - s["prepare_s"]
    return {
        "wall_s": wall_s,
        "rate": replications / wall_s,
        "startup_s": wall_s - steady_s,
        "steady_rate": replications / steady_s,
        "hits": s["decode_cache_hits"],
        "misses": s["decode_cache_misses"],
        "previews": previews,
        "ms_ssim": result.summary[0]["final_ms_ssim_median"],
        "per_rep_s": steady_s / replications,
        "hit_rate": s["decode_cache_hit_rate"] or 0.0,
        "tables": (result.results_csv(), result.summary_csv()),
    }


def compare_dask(args: argparse.Namespace, image: np.ndarray) -> str:
    """Pool and Dask LocalCluster (worker processes), alternating, in one run."""
    from distributed import LocalCluster

    pool, dask = [], []
    for i in range(args.runs):
        pool.append(
            timed_sweep(args.scenario, image, args.replications, args.workers, True, args.seed)
        )
        # A fresh cluster per run: its workers start with empty caches, as the pool's
        # processes do (the cluster's own start-up is not timed; the model load is).
        with LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        ) as cluster:
            dask.append(
                timed_sweep(
                    args.scenario,
                    image,
                    args.replications,
                    args.workers,
                    True,
                    args.seed,
                    scheduler=cluster.scheduler_address,
                )
            )
        for name, r in (("pool", pool[-1]), ("dask", dask[-1])):
            print(
                f"run {i + 1}: {name} {r['wall_s']:6.1f} s wall, "
                f"{1000 * r['per_rep_s']:6.1f} ms/replication after start-up, "
                f"cache hits {r['hit_rate']:.0%}",
                flush=True,
            )
    assert all(d["tables"] == p["tables"] for d, p in zip(dask, pool, strict=True)), (
        "Dask and the pool gave different tables"
    )

    def med(rows: list[dict], k: str) -> float:
        return statistics.median(r[k] for r in rows)

    ratio = med(dask, "per_rep_s") / med(pool, "per_rep_s")
    wall_ratio = med(dask, "wall_s") / med(pool, "wall_s")
    lines = [
        f"scenario {args.scenario}, 256×256 image, {args.replications} replications, "
        f"{args.workers} worker processes (Dask: a fresh LocalCluster per run, "
        f"{args.workers} workers × 1 thread), median of {args.runs} alternating run(s); "
        "tables identical",
        "",
        "| executor | ms per replication after start-up | whole call wall (s) "
        "| decode-cache hits |",
        "|---|---|---|---|",
    ]
    for name, rows in (("process pool", pool), ("Dask LocalCluster", dask)):
        lines.append(
            f"| {name} | {1000 * med(rows, 'per_rep_s'):.1f} | {med(rows, 'wall_s'):.1f} | "
            f"{med(rows, 'hit_rate'):.0%} |"
        )
    verdict = "meets" if ratio <= 1.3 else "misses"
    lines += [
        "",
        f"Dask / pool per replication: {ratio:.2f}× ({verdict} the 1.3× bar); whole call: "
        f"{wall_ratio:.2f}×",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scenario", default="geo-burst-arq")
    ap.add_argument("--image", type=Path, help="source image (resized to 256×256)")
    ap.add_argument("--replications", type=int, default=1000)
    ap.add_argument(
        "--baseline-replications",
        type=int,
        default=200,
        help="replications for the no-cache baseline (0: skip it)",
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3, help="runs of each; the median is reported")
    ap.add_argument("--seed", type=int, default=0, help="root seed")
    ap.add_argument("--out", type=Path, help="also write the Markdown table here")
    ap.add_argument(
        "--dask", action="store_true", help="compare a Dask LocalCluster with the pool instead"
    )
    args = ap.parse_args()
    image = image_256(args.image)
    if args.dask:
        text = compare_dask(args, image)
        print()
        print(text)
        if args.out:
            args.out.write_text(text + "\n")
        return

    cached, plain = [], []
    for i in range(args.runs):
        cached.append(
            timed_sweep(args.scenario, image, args.replications, args.workers, True, args.seed)
        )
        print(
            f"run {i + 1}: cache    {cached[-1]['wall_s']:7.1f} s  {cached[-1]['rate']:7.2f} rep/s",
            flush=True,
        )
        if args.baseline_replications:
            plain.append(
                timed_sweep(
                    args.scenario, image, args.baseline_replications, args.workers, False, args.seed
                )
            )
            print(
                f"run {i + 1}: no cache {plain[-1]['wall_s']:7.1f} s  "
                f"{plain[-1]['rate']:7.2f} rep/s",
                flush=True,
            )

    def med(rows: list[dict], k: str) -> float:
        return statistics.median(r[k] for r in rows)

    c = cached[-1]
    bar = f"≤ {BAR_S:.0f} s" if args.replications == 1000 else "(bar is for 1,000)"

    def row(name: str, n: int, rows: list[dict], bar_text: str) -> str:
        return (
            f"| {name} | {n} | {med(rows, 'wall_s'):.1f} "
            f"(min {min(r['wall_s'] for r in rows):.1f}) | {med(rows, 'rate'):.2f} | "
            f"{med(rows, 'startup_s'):.1f} | {med(rows, 'steady_rate'):.2f} | {bar_text} |"
        )

    lines = [
        f"scenario {args.scenario}, 256×256 image, {args.workers} workers, median of "
        f"{args.runs} run(s); {c['previews']} previews over {args.replications} replications "
        f"(decode cache: {c['hits']} hits, {c['misses']} misses per run; median final "
        f"MS-SSIM {c['ms_ssim']:.3f})",
        "",
        "| sweep | replications | wall time (s) | replications/s (wall) | start-up + encode (s)"
        " | replications/s after start-up | bar |",
        "|---|---|---|---|---|---|---|",
        row("with decode cache", args.replications, cached, bar),
    ]
    if plain:
        lines.append(row("without decode cache (baseline)", args.baseline_replications, plain, ""))
        wall_x = med(cached, "rate") / med(plain, "rate")
        steady_x = med(cached, "steady_rate") / med(plain, "steady_rate")
        lines += [
            "",
            f"decode cache speed-up in replications/s: {wall_x:.1f}× wall, "
            f"{steady_x:.1f}× after start-up; "
            f"projected baseline wall time for {args.replications}: "
            f"{med(plain, 'startup_s') + args.replications / med(plain, 'steady_rate'):.0f} s",
        ]
    text = "\n".join(lines)
    print()
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
