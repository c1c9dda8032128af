"""The sweep itself: plan the replications, resume what is done, run the rest, make the tables.

>>> r = sweep("bds3-rsmc-geo", grid={"channel.loss.p": [0.0, 0.2]}, seeds=10,
...           payloads=["rvq", "jpeg"], workers=0)                  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from satlink.outdir import OutputFolder
from satlink.scenario import DEFAULT_SCENARIO, Scenario
from satlink.sweep import worker
from satlink.sweep.grid import (
    Replication,
    SweepError,
    SweepImage,
    base_scenario,
    canonical,
    check_int,
    check_payloads,
    digest,
    parse_grid,
    point_scenarios,
    replication_seeds,
    resolve_images,
)
from satlink.sweep.results import SweepResult, summarise_groups
from satlink.sweep.runners import DaskRunner, InlineRunner, PoolRunner, Runner
from satlink.sweep.store import load_done, replication_key, save_done

__all__ = ["sweep"]

MAX_CHUNK = 16  # replications per job at most: the progress bar moves, an interrupt loses little
CHUNKS_PER_SLOT = 8  # several jobs per worker thread balance the load


@dataclass
class _Group:
    """Replications that share grid point, payload and image (table order within)."""

    work: worker.Work
    payload: str
    budget_packets: int | None
    reps: list[Replication] = field(default_factory=list)


def _plan(
    points: Sequence[tuple[dict, Scenario]],
    payloads: Sequence[str],
    images: Sequence[SweepImage],
    seeds: Sequence[int],
    budget_packets: int | None,
    model: str,
    fingerprint: str,
    effort: int = 0,
    beam_width: int = 1,
) -> list[_Group]:
    """Every replication in table order: point, payload, image, replicate."""
    groups = []
    for pi, (point, sc) in enumerate(points):
        sc_dict = sc.to_dict()
        physics = {k: v for k, v in sc_dict.items() if k != "scenario"}  # names don't matter
        sc_json = json.dumps(sc_dict, sort_keys=True)
        for payload in payloads:
            budget = budget_packets if payload != "rvq" else None
            for ii, img in enumerate(images):
                group = _Group(
                    worker.Work(
                        sc_json, sc.origin, img.digest, model, fingerprint, effort, beam_width
                    ),
                    payload,
                    budget,
                )
                # Effort and beam change the indices, so they are part of a replication's
                # identity; the defaults keep the keys of runs made before either existed.
                model_key = fingerprint + (f"+effort{effort}" if effort else "")
                model_key += f"+beam{beam_width}" if beam_width > 1 else ""
                for r, seed in enumerate(seeds):
                    key = replication_key(physics, img.digest, payload, budget, seed, model_key)
                    rep = Replication(
                        pi, tuple(point.items()), payload, img.label, ii, r, seed, key
                    )
                    group.reps.append(rep)
                groups.append(group)
    return groups


def _jobs(
    groups: Sequence[_Group],
    done: Mapping[str, Any],
    slots: int,
    chunk_size: int | None,
    decode_cache: bool,
    cache_entries: int,
) -> tuple[dict[str, worker.PrepJob], list[tuple[worker.Chunk, str]]]:
    """First-phase jobs (each payload encoded, or fitted, once per image, packet layout and
    budget) and second-phase chunks, for the groups with work left. Equal keys (the same
    pixels under two labels) run once.

    Chunks are grouped by image: a worker's decode cache belongs to an image, so the
    replications of one image go out together, image after image.
    """
    preps: dict[str, worker.PrepJob] = {}
    todo: set[str] = set()
    pending_by_group = []
    for g in groups:
        pending = [r for r in g.reps if r.key not in done and r.key not in todo]
        todo.update(r.key for r in pending)
        if pending:
            pending_by_group.append((g, pending))
    size = chunk_size or max(1, min(MAX_CHUNK, math.ceil(len(todo) / (slots * CHUNKS_PER_SLOT))))
    chunks: list[tuple[worker.Chunk, str]] = []
    for g, pending in sorted(pending_by_group, key=lambda gp: gp[0].work.image_digest):
        resolved = json.loads(g.work.scenario_json)
        packets = [resolved["packets"], resolved.get("fec")]  # the plan's repairs: [fec]
        prep_key = "prep-" + digest(
            canonical(
                [
                    g.work.image_digest,
                    g.payload,
                    packets,
                    g.budget_packets,
                    g.work.model_fingerprint,
                    g.work.effort,
                    g.work.beam_width,
                ]
            )
        )
        preps.setdefault(prep_key, worker.PrepJob(g.work, g.payload, g.budget_packets, prep_key))
        for i in range(0, len(pending), size):
            part = pending[i : i + size]
            seeds, keys = tuple(r.seed for r in part), tuple(r.key for r in part)
            chunks.append(
                (worker.Chunk(g.work, decode_cache, cache_entries, seeds, keys), prep_key)
            )
    return preps, chunks


# [protocol://]host[:port][/path]: a host name, an IPv4 address or a bracketed IPv6 one
SCHEDULER_ADDRESS = re.compile(
    r"(?:[a-z][a-z0-9+.-]*://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::\d{1,5})?(?:/\S*)?"
)


# The files of a sweep folder besides replications/<key>.json (checked against the user's own).
SWEEP_FILES = (
    "results.csv",
    "replications.csv",
    "summary.csv",
    "quality_vs_packets.png",
    "quality_vs_time.png",
    "sweep.json",
    "report.html",
)


def usable_workers(workers: int) -> int:
    """``workers`` capped to this machine's CPU cores: more processes only cost memory."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(workers, max(1, cores))


def _runner(scheduler: str | None, workers: int, jobs: int, model: str, fingerprint: str) -> Runner:
    if scheduler is not None:
        return DaskRunner(scheduler.strip(), model, fingerprint)
    if workers == 0:
        return InlineRunner()
    return PoolRunner(min(usable_workers(workers), jobs), model, fingerprint)


def sweep(
    scenario: str | Path | Scenario = DEFAULT_SCENARIO,
    *,
    grid: Mapping[str, Sequence[Any]] | Sequence[str] | str | None = None,
    seeds: int = 20,
    images: str | Path | np.ndarray | Mapping[str, Any] | Sequence[Any] | None = None,
    workers: int = 2,
    scheduler: str | None = None,
    out_dir: str | Path | None = None,
    root_seed: int = 0,
    payloads: Sequence[str] | str = ("rvq",),
    budget_packets: int | None = None,
    overrides: Sequence[str] = (),
    progress: bool = False,
    model: str | int | Path | None = None,
    decode_cache: bool = True,
    cache_entries: int = 4096,
    chunk_size: int | None = None,
    plots: bool = True,
    effort: int = 0,
    beam_width: int = 1,
) -> SweepResult:
    """Run (or resume) a Monte Carlo sweep and, with ``out_dir``, write its tables and plots.

    ``grid``: ``["channel.loss.p=0,0.1"]`` or ``{"channel.loss.p": [0, 0.1]}``; ``seeds``:
    replicates per grid point, image and payload; ``images``: a folder, a file, an array, a
    list, or ``{label: array or path}`` (default: the built-in astronaut); ``workers``: local
    processes (0 runs in this process); ``scheduler``: a Dask address such as
    ``tcp://host:8786`` (then ``workers`` is ignored); ``payloads``: any of
    ``rvq avif jxl jpeg``; ``budget_packets``: packets for the classical files (default: as
    many as the RVQ code); ``overrides``: ``KEY=VALUE`` strings applied before the grid;
    ``model``: a model name, id or ``.pt`` path (default: ``codec.zoo.DEFAULT_MODEL``);
    ``decode_cache=False`` decodes every preview afresh (the benchmark's baseline);
    ``effort``: encoder-side refinement steps for the RVQ code, ``beam_width``: paths kept by
    the encoder's beam search (both as ``codec.Codec.encode``).

    >>> r = sweep("bds3-rsmc-geo", grid={"channel.loss.p": [0.0, 0.2]}, seeds=10,
    ...           payloads=["rvq", "jpeg"], workers=0)                  # doctest: +SKIP
    >>> [row["final_ms_ssim_median"] for row in r.summary]               # doctest: +SKIP
    """
    t_start = time.perf_counter()
    seeds = check_int("seeds", seeds, 1)
    workers = check_int("workers", workers, 0)
    cache_entries = check_int("cache_entries", cache_entries, 1)
    effort = check_int("effort", effort, 0)
    beam_width = check_int("beam_width", beam_width, 1)
    from codec.api import CodecInputError, check_search  # here, not at import: it loads torch

    try:
        check_search(effort, beam_width)
    except CodecInputError as exc:
        raise SweepError(str(exc)) from None
    if budget_packets is not None:
        budget_packets = check_int("budget_packets", budget_packets, 1)
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size, 1)
    if scheduler is not None and (
        not isinstance(scheduler, str) or not SCHEDULER_ADDRESS.fullmatch(scheduler.strip())
    ):
        # checked before anything connects: a malformed address would wait out the timeout
        raise SweepError(
            f"scheduler = {scheduler!r}: not a Dask scheduler address; expected "
            "[protocol://]host[:port], e.g. tcp://10.0.0.5:8786"
        )
    payload_list = check_payloads(payloads)
    seed_list = replication_seeds(root_seed, seeds)
    grid_values = parse_grid(grid)
    base = base_scenario(scenario, list(overrides))
    points = point_scenarios(base, grid_values)
    image_list = resolve_images(images)
    if model is None:
        from codec.zoo import DEFAULT_MODEL  # here, not at import: it loads torch

        model = DEFAULT_MODEL
    elif isinstance(model, int):  # a model id, as packet headers carry it
        from codec.zoo import weights_path

        model = weights_path(model)
    model = str(model)
    fingerprint = worker.model_fingerprint(model)
    groups = _plan(
        points,
        payload_list,
        image_list,
        seed_list,
        budget_packets,
        model,
        fingerprint,
        effort,
        beam_width,
    )
    reps = [r for g in groups for r in g.reps]

    out = Path(out_dir) if out_dir is not None else None
    folder = OutputFolder(out, kind="sweep", remove_stale=False) if out is not None else None
    if folder is not None:
        folder.claim(SWEEP_FILES)  # someone else's folder is refused; one sweep at a time
    with folder if folder is not None else contextlib.nullcontext():
        store = out / "replications" if out is not None else None
        results: dict[str, dict[str, Any]] = {}
        if store is not None:
            try:
                store.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SweepError(f"out_dir: cannot create {store}: {exc.strerror or exc}") from None
            for rep in reps:
                if rep.key not in results and (
                    done := load_done(store / f"{rep.key}.json", rep.key)
                ):
                    results[rep.key] = done
        resumed = len(results)

        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(
                total=len({r.key for r in reps}),
                initial=resumed,
                unit="rep",
                desc=f"sweep {base.name}",
                dynamic_ncols=True,
            )
        counters = {"hits": 0, "misses": 0, "run": 0, "chunks": 0}
        shared: dict[str, Any] = {img.digest: img.pixels for img in image_list}

        def prep_sink(output: tuple[str, Any]) -> None:
            shared[output[0]] = output[1]

        def sink(output: worker.ChunkOutput) -> None:
            for key, res in zip(output.keys, output.results, strict=True):
                res["key"] = key
                results[key] = res
                if store is not None:
                    save_done(store, key, res)
                    folder.written.add(f"replications/{key}.json")
            counters["hits"] += output.cache_hits
            counters["misses"] += output.cache_misses
            counters["run"] += len(output.keys)
            if bar is not None:
                bar.update(len(output.keys))
                lookups = counters["hits"] + counters["misses"]
                if lookups:
                    bar.set_postfix(cache_hits=f"{counters['hits'] / lookups:.0%}")

        t_run = time.perf_counter()
        prep_s = 0.0
        n_todo = sum(1 for r in reps if r.key not in results)
        try:
            if n_todo:
                with _runner(scheduler, workers, n_todo, model, fingerprint) as runner:
                    preps, chunks = _jobs(
                        groups, results, runner.slots, chunk_size, decode_cache, cache_entries
                    )
                    counters["chunks"] = len(chunks)
                    if bar is not None:
                        bar.set_postfix_str("encoding payloads")
                    prep_jobs = [(job, (job.work.image_digest,)) for job in preps.values()]
                    # Looked up on the module at call time, so a test can stand in for a worker.
                    runner.run(worker.run_prep, prep_jobs, shared, prep_sink)
                    prep_s = time.perf_counter() - t_run
                    if bar is not None:
                        bar.set_postfix_str("replaying")
                    chunk_jobs = [(c, (c.work.image_digest, prep_key)) for c, prep_key in chunks]
                    runner.run(worker.run_chunk, chunk_jobs, shared, sink)
        except KeyboardInterrupt:
            if bar is not None:
                bar.close()
                bar = None
                where = f"; run the same sweep again to resume from {store}" if store else ""
                print(
                    f"sweep interrupted: {len(results)} of {len(reps)} replications done{where}",
                    file=sys.stderr,
                    flush=True,
                )
            raise
        finally:
            if bar is not None:
                bar.close()
        run_s = time.perf_counter() - t_run

        table_groups: dict[tuple, list] = {}
        for rep in reps:
            table_groups.setdefault((rep.point_index, rep.payload), []).append(
                (rep, results[rep.key])
            )
        replication_rows = []
        for rep in reps:
            res = results[rep.key]
            info = res["payload_info"]
            replication_rows.append(
                {
                    **dict(rep.point),
                    "payload": rep.payload,
                    "image": rep.image,
                    "replicate": rep.replicate,
                    "seed": rep.seed,
                    "key": rep.key,
                    "budget_packets": info.get("budget_packets"),
                    "fits": info.get("fits", True),
                    "file_bytes": info.get("file_bytes"),
                    **res["figures"],
                }
            )
        lookups = counters["hits"] + counters["misses"]
        stats = {
            "replications": len(reps),
            "run": counters["run"],
            "resumed": resumed,
            "elapsed_s": time.perf_counter() - t_start,
            "run_s": run_s,
            "replications_per_s": counters["run"] / run_s
            if counters["run"] and run_s > 0
            else None,
            "decode_cache": decode_cache,
            "decode_cache_hits": counters["hits"],
            "decode_cache_misses": counters["misses"],
            "decode_cache_hit_rate": counters["hits"] / lookups if lookups else None,
            "workers": usable_workers(workers) if scheduler is None else None,  # processes run
            "scheduler": scheduler,
            "chunks": counters["chunks"],
            "prepare_s": prep_s,
            "model": model,
            "model_fingerprint": fingerprint,
            "effort": effort,
            "beam_width": beam_width,
        }
        result = SweepResult(
            base.name,
            grid_values,
            payload_list,
            [i.label for i in image_list],
            seeds,
            int(root_seed),
            replication_rows,
            summarise_groups(list(grid_values), table_groups),
            out,
            stats,
            [(rep, results[rep.key]) for rep in reps],
        )
        if out is not None:
            result.write(plots=plots)
        if folder is not None:
            folder.written.update(name for name in SWEEP_FILES if folder.wrote(name))
            folder.finish("complete")
    return result
