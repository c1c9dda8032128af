"""Monte Carlo sweeps: many replays over a grid of scenario values, locally or on Dask.

>>> from satlink.sweep import sweep
>>> result = sweep("geo-burst-arq", grid=["channel.loss.p=0.02,0.05,0.1"], seeds=200,
...                payloads=("rvq", "avif"), out_dir="sweep-out")        # doctest: +SKIP
>>> print(result.summary_table())                                        # doctest: +SKIP

**Replications.** The grid is the product of the given keys' values (any scenario key, as in
``--set``), times ``seeds`` replicates, times the images, times the payloads. One replication is
one replay: the payload's packets through the grid point's link, a preview and its scores after
every new packet (see :func:`satlink.replay.replay`; the figures mean the same here).

**Seeds.** Replicate ``r`` gets its link seed from one root seed:
``SeedSequence(root_seed).spawn(seeds)[r]``, reduced to a 63-bit integer
(:func:`replication_seeds`). The same replicate uses the same seed at every grid point, image and
payload (common random numbers: differences between rows come from the parameters, not from the
luck of the draw), and ``satlink replay --seed N --set KEY=VALUE`` replays any RVQ replication
exactly. Results do not depend on where or in what order replications ran: each one is a pure
function of its parameters, every worker runs torch on one thread, and the tables are assembled
in a fixed order.

**Payloads.** ``"rvq"`` is the progressive code; ``"avif"``, ``"jxl"``, ``"jpeg"`` send the best
file of that codec (``codec.eval.fit_classical``, selected by MS-SSIM) that fits
``budget_packets`` packets, by default as many as the RVQ code of that image takes at that grid
point. The receiver shows nothing until the file is whole. When no file fits, the replication
sends nothing and never shows a picture (``fits`` is false in ``replications.csv``).

**Never reached / no picture.** A time the replication never reached (no picture, or MS-SSIM
stayed below the target) counts as +infinity: it ranks after every finite time, so a median or
percentile is ``inf`` (``never`` in :meth:`SweepResult.summary_table`) when at least that share of
replications never got there; ``*_reached_frac`` says how many did. While no picture has arrived
(and as final quality, if none ever does) a replication scores as a mid-grey image, as the codec
evaluation scores a miss; ``no_picture_frac`` counts those replications.

**Outputs** (``out_dir``):

- ``results.csv``: tidy, one row per replication and link event (a transmission, drop or wait):
  grid values, ``payload``, ``image``, ``replicate``, ``seed``, ``event``, ``wire_seq`` (message
  on the wire; fragments count), ``packet_seq``, ``attempt``, ``messages_sent`` (transmissions so
  far, this one included), ``t_tx_start_s``, ``t_arrival_s``, ``outcome``, ``rx_verdict``,
  ``preview`` and the preview's ``psnr_db`` and ``ms_ssim``;
- ``replications.csv``: one row per replication with its headline figures;
- ``summary.csv``: per grid point and payload, median, p10 and p90 (linear interpolation) of the
  time to first preview, to MS-SSIM 0.8 and 0.9 and to full quality, and of the final MS-SSIM and
  PSNR;
- ``quality_vs_packets.png`` and ``quality_vs_time.png``: median line and 10–90% band per grid
  point and payload;
- ``sweep.json``: the sweep's parameters and run statistics (decode-cache hits, rate);
- ``replications/<key>.json``: one file per finished replication, named by a hash of everything
  that decides its result and written atomically. Running the same sweep again (or a larger
  one: more seeds, more grid values) reuses them, so an interrupted sweep resumes where it
  stopped.

**Speed.** A first phase, spread over the workers, encodes each image once per payload and
packet layout (for classical payloads: fits the file to the budget once). Then each worker keeps
a bounded :class:`~satlink.receiver.DecodeCache` per image (scores only, no pixels): replications
of one image see the same received masks again and again, so each distinct mask is decoded and
scored once per worker. ``SweepResult.stats`` reports the hits and misses.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import json
import math
import os
import sys
import threading
import time
import tomllib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from satlink.scenario import (
    DEFAULT_SCENARIO,
    Scenario,
    ScenarioError,
    apply_overrides,
    load_scenario,
    parse_scenario,
)

__all__ = [
    "PAYLOADS",
    "Replication",
    "SweepError",
    "SweepResult",
    "expand_grid",
    "parse_grid",
    "replication_seeds",
    "sweep",
]

FORMAT_VERSION = 1  # of the per-replication files; part of their key
PAYLOADS: tuple[str, ...] = ("rvq", "avif", "jxl", "jpeg")
DEFAULT_MODEL = "progic-rvq-s"  # codec.zoo.DEFAULT_MODEL (not imported: it would load torch)
MSSSIM_TARGETS = (0.8, 0.9)
QUANTILES: tuple[tuple[str, float], ...] = (("median", 0.5), ("p10", 0.1), ("p90", 0.9))
TIME_FIGURES = (
    "time_to_first_preview_s",
    *(f"time_to_msssim_{t}_s" for t in MSSSIM_TARGETS),
    "time_to_full_quality_s",
)
SCORE_FIGURES = ("final_ms_ssim", "final_psnr_db")
# Trace outcomes that put a message on the wire (drops and visibility waits do not).
TX_OUTCOMES = frozenset({"delivered", "lost", "corrupted", "retransmitted"})
MISS_GREY = 128  # codec.eval.MISS_GREY: what a receiver with no picture is scored as
ROW_COLUMNS = (
    "event",
    "wire_seq",
    "packet_seq",
    "attempt",
    "messages_sent",
    "t_tx_start_s",
    "t_arrival_s",
    "outcome",
    "rx_verdict",
    "preview",
    "psnr_db",
    "ms_ssim",
)
PSNR_PLOT_CAP_DB = 100.0  # a lossless preview scores inf dB; the band plot clips it here


class SweepError(ValueError):
    """A sweep that cannot run as asked; the message names the argument or key at fault."""


# ---------------------------------------------------------------------------------------------
# Grid
# ---------------------------------------------------------------------------------------------


def _split_values(key: str, text: str) -> list[str]:
    """Split ``0,0.1,[[0, 60], [120, 180]]`` at top-level commas (not inside brackets/quotes)."""
    parts: list[str] = []
    cur: list[str] = []
    depth, quote = 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth < 0:
                raise SweepError(f"grid {key}={text}: unbalanced {ch!r}")
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if quote or depth:
        raise SweepError(f"grid {key}={text}: unclosed {'quote' if quote else 'bracket'}")
    parts.append("".join(cur).strip())
    if any(not p for p in parts):
        raise SweepError(f"grid {key}={text}: empty value; expected KEY=V1,V2,...")
    return parts


def _parse_literal(text: str) -> Any:
    # Same rule as --set (satlink.scenario.apply_overrides): a TOML literal, else a bare string.
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _check_key(key: Any, where: str) -> str:
    if not isinstance(key, str) or not key.strip():
        raise SweepError(f"{where}: grid key must be a dotted scenario key, got {key!r}")
    key = key.strip()
    parts = key.split(".")
    if any(not p.strip() or p != p.strip() for p in parts):
        raise SweepError(f"{where}: grid key {key!r} must be dotted names, e.g. channel.loss.p")
    if parts[0] == "scenario":
        raise SweepError(
            f"grid key {key!r}: the [scenario] table names the scenario and does "
            "not change the simulation; sweep a packets.*, channel.* or budget.* key"
        )
    return key


def parse_grid(grid: Mapping[str, Sequence[Any]] | Sequence[str] | str | None) -> dict[str, list]:
    """Grid keys and their values, in the order given.

    Strings are ``KEY=V1,V2,...`` as on the command line (values are TOML literals; bare words
    are strings; commas inside brackets do not split); a mapping gives the values directly.

    >>> parse_grid(["channel.loss.p=0,0.05", "packets.order=stage-major,position-major"])
    {'channel.loss.p': [0, 0.05], 'packets.order': ['stage-major', 'position-major']}
    >>> parse_grid({"channel.arq.mode": ["none", "selective-repeat"]})
    {'channel.arq.mode': ['none', 'selective-repeat']}
    >>> parse_grid(["p"])
    Traceback (most recent call last):
    ...
    satlink.sweep.SweepError: grid 'p': expected KEY=V1,V2,..., e.g. channel.loss.p=0,0.1
    """
    if grid is None:
        return {}
    out: dict[str, list] = {}
    if isinstance(grid, Mapping):
        items: Iterable[tuple[str, Any]] = grid.items()
        for key, values in items:
            key = _check_key(key, "grid")
            if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
                raise SweepError(f"grid key {key!r}: expected a list of values, got {values!r}")
            values = [v.item() if isinstance(v, np.generic) else v for v in values]
            _add_key(out, key, values)
        return out
    if isinstance(grid, str):
        grid = [grid]
    for item in grid:
        if not isinstance(item, str) or "=" not in item:
            raise SweepError(f"grid {item!r}: expected KEY=V1,V2,..., e.g. channel.loss.p=0,0.1")
        key, _, text = item.partition("=")
        key = _check_key(key, f"grid {item!r}")
        if not text.strip():
            raise SweepError(f"grid {item!r}: no values after '='; expected KEY=V1,V2,...")
        _add_key(out, key, [_parse_literal(v) for v in _split_values(key, text.strip())])
    return out


def _add_key(out: dict[str, list], key: str, values: list) -> None:
    if key in out:
        raise SweepError(f"grid key {key!r} is given twice; list all its values once")
    if not values:
        raise SweepError(f"grid key {key!r}: no values")
    seen: list[str] = []
    for v in values:
        lit = _toml_literal(v, key)
        if lit in seen:
            raise SweepError(f"grid key {key!r}: value {v!r} is listed twice")
        seen.append(lit)
    out[key] = list(values)


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values (first key varies slowest).

    >>> expand_grid({"a.x": [1, 2], "a.y": ["u", "v"]})
    [{'a.x': 1, 'a.y': 'u'}, {'a.x': 1, 'a.y': 'v'}, {'a.x': 2, 'a.y': 'u'}, {'a.x': 2, 'a.y': 'v'}]
    >>> expand_grid({})
    [{}]
    """
    keys = list(grid)
    return [
        dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))
    ]


def _toml_literal(value: Any, key: str = "") -> str:
    """A value as a TOML literal (for ``--set KEY=VALUE`` provenance and duplicate checks)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return (
            repr(value)
            if not isinstance(value, float) or math.isfinite(value)
            else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
        )
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_literal(v, key) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_literal(v, key)}" for k, v in value.items()) + "}"
    raise SweepError(f"grid key {key!r}: value {value!r} is not a number, string, boolean or list")


def _set_key(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise SweepError(
                f"grid key {key!r}: {'.'.join(parts[: i + 1])!r} is a value, not a table"
            )
        node = child
    if isinstance(node.get(parts[-1]), dict):
        raise SweepError(
            f"grid key {key!r} is a table; sweep a key inside it, "
            f"e.g. {key}.{next(iter(node[parts[-1]]), 'name')}"
        )
    node[parts[-1]] = value


def replication_seeds(root_seed: int, count: int) -> list[int]:
    """Link seeds of replicates ``0..count-1``: ``SeedSequence(root_seed).spawn(count)``, each
    child reduced to a 63-bit integer (a CSV column, and ``satlink replay --seed`` takes it).

    Prefix-stable: the first 100 of 200 seeds are the 100 seeds of a 100-seed sweep.

    >>> replication_seeds(0, 3) == replication_seeds(0, 5)[:3]
    True
    """
    if isinstance(root_seed, bool) or not isinstance(root_seed, int | np.integer) or root_seed < 0:
        raise SweepError(f"root_seed = {root_seed!r}: expected an integer >= 0")
    children = np.random.SeedSequence(int(root_seed)).spawn(count)
    return [int(c.generate_state(1, np.uint64)[0] >> np.uint64(1)) for c in children]


# ---------------------------------------------------------------------------------------------
# What runs where
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Replication:
    """One replay of a sweep: a grid point, an image, a payload and a replicate's seed.

    ``key`` is a stable hash of everything that decides the result (the resolved scenario, the
    image's pixels, payload, budget, seed, codec weights), so it names the result file.
    """

    point_index: int
    point: tuple[tuple[str, Any], ...]
    payload: str
    image: str
    image_index: int
    replicate: int
    seed: int
    key: str


@dataclass(frozen=True)
class _Work:
    """What every job of one group needs: the grid point's scenario, the image and the codec."""

    scenario_json: str  # the grid point's resolved scenario (Scenario.to_dict as JSON)
    source: str  # for error messages
    image_digest: str
    model: str
    model_fingerprint: str


@dataclass(frozen=True)
class _PrepJob:
    """Encode (or fit a classical file to the budget) once, before the replications."""

    work: _Work
    payload: str
    budget_packets: int | None
    key: str


@dataclass(frozen=True)
class _Chunk:
    """Replications that share scenario, image and payload: a unit of work for one worker."""

    work: _Work
    decode_cache: bool
    cache_entries: int
    seeds: tuple[int, ...]
    keys: tuple[str, ...]


@dataclass
class _ChunkOutput:
    keys: tuple[str, ...]
    results: list[dict[str, Any]]
    cache_hits: int
    cache_misses: int


@dataclass(frozen=True)
class _Image:
    label: str
    pixels: np.ndarray
    digest: str


def _digest(*parts: bytes, size: int = 16) -> str:
    h = hashlib.blake2b(digest_size=size)
    for p in parts:
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def _model_fingerprint(model: str | Path) -> str:
    """Hash of the weight file: a retrained model must not reuse old replication files."""
    from codec.zoo import weights_path

    return _digest(weights_path(str(model)).read_bytes())


# -- worker side -------------------------------------------------------------------------------


class _LRU(OrderedDict):
    """A small bounded mapping; the oldest entry goes first."""

    def __init__(self, max_entries: int) -> None:
        super().__init__()
        self.max_entries = max_entries

    def remember(self, key: Any, make: Callable[[], Any]) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        while len(self) > self.max_entries:
            self.popitem(last=False)
        return value


@functools.cache
def _scores_only_cache_class() -> type:
    from satlink.receiver import DecodeCache

    class ScoresOnlyCache(DecodeCache):
        """A DecodeCache that keeps the scores but not the decoded pixels: a sweep never shows
        the pictures, and without them an entry is a few hundred bytes instead of an image."""

        def put(self, key: bytes, value: tuple[np.ndarray, dict[str, float]]) -> None:
            super().put(key, (None, value[1]))  # type: ignore[arg-type]

    return ScoresOnlyCache


def _scores_only_cache(max_entries: int):
    return _scores_only_cache_class()(max_entries)


@dataclass
class _Prepared:
    """A payload's packets on one packet layout: made once per sweep (the first phase) and
    shipped with every chunk of replications that sends them."""

    plan: Any  # satlink.replay.TransmitPlan, or None when no classical file fits
    info: dict[str, Any]


class _WorkerState:
    """Per-thread caches of one worker: parsed scenarios, payloads, floors and decode caches."""

    def __init__(self) -> None:
        self.scenarios: _LRU = _LRU(256)
        self.payloads: _LRU = _LRU(64)
        self.floors: _LRU = _LRU(64)
        self.caches: _LRU = _LRU(16)  # one DecodeCache per image


_local = threading.local()
_codec_lock = threading.Lock()
_codecs: dict[tuple[str, str], Any] = {}


def _state() -> _WorkerState:
    # Per thread: a Dask worker may run several tasks at once, and DecodeCache is not
    # thread-safe. Processes get one state each anyway.
    st = getattr(_local, "state", None)
    if st is None:
        st = _local.state = _WorkerState()
    return st


def _load_codec(model: str, fingerprint: str):
    with _codec_lock:
        key = (model, fingerprint)
        if key not in _codecs:
            here = _model_fingerprint(model)
            if here != fingerprint:
                raise SweepError(
                    f"model {model!r}: this worker's weight file differs from the "
                    "one the sweep was started with; give every worker the same "
                    "weights"
                )
            from codec import load_codec

            # Loaded here, not codec.default_codec(): that one is cached for the life of the
            # process and may predate a newer weight file with this fingerprint.
            _codecs[key] = load_codec(model)
        return _codecs[key]


def _one_thread() -> None:
    """Torch on one thread: parallelism comes from workers, and one thread everywhere keeps
    every float identical wherever a replication runs."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def _init_process() -> None:
    """Pool worker start: one torch thread, and leave Ctrl-C to the parent (it cancels)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _one_thread()


def _prepare(
    state: _WorkerState,
    pixels: np.ndarray,
    digest: str,
    payload: str,
    sc: Scenario,
    budget_packets: int | None,
    codec,
) -> _Prepared:
    p = sc.packets
    key = (digest, payload, p.size_bytes, p.fragment_bytes, p.order, p.interleave, budget_packets)
    return state.payloads.remember(
        key, lambda: _make_payload(state, pixels, digest, payload, sc, budget_packets, codec)
    )


def _make_payload(
    state: _WorkerState,
    pixels: np.ndarray,
    digest: str,
    payload: str,
    sc: Scenario,
    budget_packets: int | None,
    codec,
) -> _Prepared:
    from satlink.replay import encode_payload, plan_transmission

    if payload == "rvq":
        packets, reliable, info = encode_payload(
            pixels, "rvq", sc, budget_packets=None, message_id=1, codec=codec
        )
        info = {"payload": "rvq", "packets": len(packets)}
        return _Prepared(plan_transmission(packets, sc, reliable), info)
    from codec.eval import fit_classical
    from satlink.packets import byte_capacity, packetize_bytes

    if budget_packets is None:  # as many packets as the RVQ code of this image takes here
        budget_packets = _prepare(state, pixels, digest, "rvq", sc, None, codec).info["packets"]
    # As satlink.replay.encode_payload, except that a miss is an outcome here, not an error.
    capacity = budget_packets * byte_capacity(sc.packets.size_bytes)
    fit = fit_classical(pixels, payload, capacity)
    info: dict[str, Any] = {
        "payload": payload,
        "budget_packets": budget_packets,
        "fits": not fit.miss,
    }
    if fit.miss:
        return _Prepared(None, {**info, "packets": 0})
    content_type = {"avif": "image/avif", "jxl": "image/jxl", "jpeg": "image/jpeg"}[payload]
    packets = packetize_bytes(
        fit.data, sc.packets.size_bytes, message_id=1, content_type=content_type
    )
    info.update(
        packets=len(packets), file_bytes=len(fit.data), quality=fit.quality, scale=fit.scale
    )
    return _Prepared(plan_transmission(packets, sc, [True] * len(packets)), info)


def _floor(state: _WorkerState, pixels: np.ndarray, digest: str) -> dict[str, float]:
    """Scores of the mid-grey picture that stands for 'nothing received yet'."""

    def make() -> dict[str, float]:
        from codec.metrics import ms_ssim, psnr

        grey = np.full_like(pixels, MISS_GREY)
        return {"psnr_db": psnr(pixels, grey), "ms_ssim": ms_ssim(pixels, grey)}

    return state.floors.remember(digest, make)


def _nan_to_none(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def _replicate(
    sc: Scenario,
    pixels: np.ndarray,
    codec,
    prepared: _Prepared,
    seed: int,
    cache,
    floor: Mapping[str, float],
) -> dict[str, Any]:
    """One replication: what ``replay(sc, pixels, seed=seed)`` does, minus files and pictures."""
    from satlink.receiver import Receiver
    from satlink.replay import build_summary, deliver, join_rows

    base = {
        "format": FORMAT_VERSION,
        "seed": seed,
        "payload_info": prepared.info,
        "floor": dict(floor),
    }
    if prepared.plan is None:  # no classical file fits the budget: nothing is sent
        figures = {k: None for k in TIME_FIGURES}
        figures.update(
            final_ms_ssim=floor["ms_ssim"],
            final_psnr_db=floor["psnr_db"],
            no_picture=True,
            previews=0,
            packets=0,
            messages_sent=0,
            delivered=0,
            lost=0,
            corrupted=0,
            retransmitted=0,
            dropped=0,
        )
        return {**base, "figures": figures, "rows": []}
    plan = prepared.plan
    fragmented = sc.packets.fragment_bytes is not None
    rx = Receiver(
        codec,
        pixels,
        packet_size_bytes=sc.packets.size_bytes,
        fragmented=fragmented,
        cache=cache,
        keep_images=False,
    )
    arrivals: list = []
    trace = deliver(sc, plan, rx, seed, arrivals)
    trace_rows = list(trace.rows())
    joined = join_rows(trace_rows, arrivals, plan)
    summary = build_summary(
        sc, seed, "", pixels, codec, {}, plan, rx.previews, trace_rows, arrivals, False
    )
    rows, sent = [], 0
    for i, r in enumerate(joined):
        sent += r["outcome"] in TX_OUTCOMES
        rows.append(
            [
                i,
                r["seq"],
                r["packet_seq"],
                r["attempt"],
                sent,
                _nan_to_none(r["t_tx_start_s"]),
                _nan_to_none(r["t_arrival_s"]),
                r["outcome"],
                r["rx_verdict"] or None,
                r["preview"] if r["preview"] != "" else None,
                r.get("psnr"),
                r.get("ms-ssim"),
            ]
        )
    c = summary["counts"]
    no_picture = not rx.previews
    figures = {k: summary[k] for k in TIME_FIGURES}
    figures.update(
        final_ms_ssim=floor["ms_ssim"] if no_picture else summary["final_ms_ssim"],
        final_psnr_db=floor["psnr_db"] if no_picture else summary["final_psnr_db"],
        no_picture=no_picture,
        previews=len(rx.previews),
        packets=plan.packet_count,
        messages_sent=sent,
        delivered=c["delivered"],
        lost=c["lost"],
        corrupted=c["corrupted"],
        retransmitted=c["retransmitted"],
        dropped=c["dropped"],
    )
    return {**base, "figures": figures, "rows": rows}


def _scenario(state: _WorkerState, work: _Work) -> Scenario:
    return state.scenarios.remember(
        work.scenario_json, lambda: parse_scenario(json.loads(work.scenario_json), work.source)
    )


def _run_prep(job: _PrepJob, pixels: np.ndarray) -> tuple[str, _Prepared]:
    """Worker entry point of the first phase: one payload's packets for one image and layout."""
    _one_thread()
    state = _state()
    codec = _load_codec(job.work.model, job.work.model_fingerprint)
    sc = _scenario(state, job.work)
    prepared = _prepare(
        state, pixels, job.work.image_digest, job.payload, sc, job.budget_packets, codec
    )
    return job.key, prepared


def _run_chunk(chunk: _Chunk, pixels: np.ndarray, prepared: _Prepared) -> _ChunkOutput:
    """Worker entry point of the second phase: replications of one group."""
    _one_thread()
    state = _state()
    work = chunk.work
    codec = _load_codec(work.model, work.model_fingerprint)
    sc = _scenario(state, work)
    cache = None
    if chunk.decode_cache:
        cache = state.caches.remember(
            work.image_digest, lambda: _scores_only_cache(chunk.cache_entries)
        )
    hits0, misses0 = (cache.hits, cache.misses) if cache is not None else (0, 0)
    floor = _floor(state, pixels, work.image_digest)
    results = [_replicate(sc, pixels, codec, prepared, seed, cache, floor) for seed in chunk.seeds]
    hits, misses = (cache.hits - hits0, cache.misses - misses0) if cache is not None else (0, 0)
    return _ChunkOutput(chunk.keys, results, hits, misses)


# -- executors ---------------------------------------------------------------------------------

# A job is ``func(arg, *shared[k] for k in keys)``: images and prepared payloads are "shared"
# so that Dask ships each of them to the cluster once, not once per job.
Job = tuple[Any, tuple[str, ...]]
Sink = Callable[[Any], None]


class _Runner:
    """Runs jobs somewhere and hands each result to ``sink`` as it completes (any order)."""

    def __enter__(self) -> _Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def run(
        self, func: Callable, jobs: Sequence[Job], shared: Mapping[str, Any], sink: Sink
    ) -> None:
        raise NotImplementedError


class _InlineRunner(_Runner):
    """In this process (``workers=0``): no start-up cost, handy in notebooks and tests."""

    def __enter__(self) -> _Runner:
        import torch

        self._threads = torch.get_num_threads()
        return self

    def close(self) -> None:
        import torch

        torch.set_num_threads(self._threads)  # the caller's setting, back as it was

    def run(
        self, func: Callable, jobs: Sequence[Job], shared: Mapping[str, Any], sink: Sink
    ) -> None:
        for arg, keys in jobs:
            sink(func(arg, *(shared[k] for k in keys)))


def _warm_up(model: str, fingerprint: str) -> None:
    """Load the model in a fresh pool process while the first jobs are being prepared."""
    _one_thread()
    _load_codec(model, fingerprint)


class _PoolRunner(_Runner):
    """A local process pool, started on first use."""

    def __init__(self, workers: int, model: str, fingerprint: str) -> None:
        self.workers = workers
        self.warm = (model, fingerprint)
        self.pool = None

    def run(
        self, func: Callable, jobs: Sequence[Job], shared: Mapping[str, Any], sink: Sink
    ) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        if self.pool is None:
            # spawn, not fork: forking a parent that already ran torch (a notebook, a test)
            # can deadlock in OpenMP; workers import satlink afresh instead.
            self.pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_process,
            )
            # The pool spawns a process per job while none is idle: one warm-up job each
            # starts them all now, loading the model in parallel instead of one by one.
            for _ in range(self.workers):
                self.pool.submit(_warm_up, *self.warm)
        futures = [self.pool.submit(func, arg, *(shared[k] for k in keys)) for arg, keys in jobs]
        try:
            for fut in as_completed(futures):
                sink(fut.result())
        except BaseException:
            # Jobs still running would finish for nothing: stop the processes this pool
            # started (taken before shutdown(), which forgets them).
            procs = list((getattr(self.pool, "_processes", None) or {}).values())
            for fut in futures:
                fut.cancel()
            self.pool.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                proc.terminate()
            self.pool = None
            raise

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None


class _DaskRunner(_Runner):
    """A Dask distributed cluster; Dask is imported only here (an optional extra)."""

    def __init__(self, address: str) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise SweepError(
                f"scheduler={address!r} needs Dask distributed, which is not installed; "
                "pip install 'satlink[dask]' (or run without a scheduler to use the "
                "local process pool)"
            ) from None
        try:
            self.client = Client(address, timeout="30s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise SweepError(
                f"scheduler={address!r}: cannot connect to the Dask scheduler ({exc})"
            ) from None
        self._scattered: dict[str, Any] = {}

    def run(
        self, func: Callable, jobs: Sequence[Job], shared: Mapping[str, Any], sink: Sink
    ) -> None:
        from distributed import as_completed

        for _, keys in jobs:
            for k in keys:
                if k not in self._scattered:
                    self._scattered[k] = self.client.scatter(shared[k])
        futures = [
            self.client.submit(func, arg, *(self._scattered[k] for k in keys), pure=False)
            for arg, keys in jobs
        ]
        try:
            for fut in as_completed(futures, loop=self.client.loop):
                sink(fut.result())
        except BaseException:
            self.client.cancel(futures)
            raise

    def close(self) -> None:
        self.client.close()


# ---------------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------------


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of sorted values where +inf means 'never': any
    interpolation that touches an inf is inf (numpy would give nan for inf - inf)."""
    n = len(sorted_values)
    if n == 0:
        return math.nan
    pos = q * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    a, b, frac = sorted_values[lo], sorted_values[hi], pos - lo
    if frac == 0 or a == b:
        return float(a)
    if math.isinf(b) or math.isinf(a):
        return math.inf
    return float(a + (b - a) * frac)


def _time_unit(values: Iterable[float]) -> tuple[float, str]:
    span = max((v for v in values if v is not None and math.isfinite(v)), default=0.0)
    if span > 3 * 3600:
        return 3600.0, "h"
    if span > 3 * 60:
        return 60.0, "min"
    return 1.0, "s"


def _cell(v: Any) -> Any:
    """CSV cell: floats by repr (exact, byte-stable), inf as 'inf', None/NaN empty."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return repr(v) if math.isfinite(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, list | tuple | dict):
        return json.dumps(v)
    return v


def _csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    # temp name + rename: an interrupted sweep never leaves a half-written file behind
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass
class SweepResult:
    """The tables of a sweep (lists of dicts, one per CSV row) and how it ran.

    >>> result.summary[0]["time_to_msssim_0.9_s_median"]       # doctest: +SKIP
    1843.2
    >>> fig = result.band_figure("time")                         # doctest: +SKIP
    """

    scenario: str
    grid: dict[str, list]
    payloads: tuple[str, ...]
    images: list[str]
    seeds: int
    root_seed: int
    replications: list[dict[str, Any]]  # replications.csv
    summary: list[dict[str, Any]]  # summary.csv
    out_dir: Path | None
    stats: dict[str, Any]
    _rows: list[tuple[Replication, dict[str, Any]]] = field(default_factory=list, repr=False)

    # -- tables ----------------------------------------------------------------------------------
    @property
    def grid_keys(self) -> list[str]:
        return list(self.grid)

    def rows(self) -> Iterator[dict[str, Any]]:
        """``results.csv`` rows: one per replication and link event (built on demand)."""
        for rep, res in self._rows:
            head = {
                **dict(rep.point),
                "payload": rep.payload,
                "image": rep.image,
                "replicate": rep.replicate,
                "seed": rep.seed,
            }
            for values in res["rows"]:
                yield {**head, **dict(zip(ROW_COLUMNS, values, strict=True))}

    def results_columns(self) -> list[str]:
        return [*self.grid_keys, "payload", "image", "replicate", "seed", *ROW_COLUMNS]

    def replications_columns(self) -> list[str]:
        return [
            *self.grid_keys,
            "payload",
            "image",
            "replicate",
            "seed",
            "key",
            "budget_packets",
            "fits",
            "file_bytes",
            *TIME_FIGURES,
            *SCORE_FIGURES,
            "no_picture",
            "previews",
            "packets",
            "messages_sent",
            "delivered",
            "lost",
            "corrupted",
            "retransmitted",
            "dropped",
        ]

    def summary_columns(self) -> list[str]:
        cols = [*self.grid_keys, "payload", "replications"]
        for fig in TIME_FIGURES:
            cols += [f"{fig}_{name}" for name, _ in QUANTILES] + [f"{fig}_reached_frac"]
        for fig in SCORE_FIGURES:
            cols += [f"{fig}_{name}" for name, _ in QUANTILES]
        return [*cols, "no_picture_frac", "messages_sent_median"]

    def results_csv(self) -> str:
        return _csv_text(self.results_columns(), self.rows())

    def replications_csv(self) -> str:
        return _csv_text(self.replications_columns(), self.replications)

    def summary_csv(self) -> str:
        return _csv_text(self.summary_columns(), self.summary)

    def summary_table(self) -> str:
        """The summary as aligned text: median [p10, p90] per grid point and payload."""
        unit_s, unit = _time_unit(r.get(f"{f}_p90") for r in self.summary for f in TIME_FIGURES)

        def t(v: float) -> str:
            return "never" if v is None or math.isinf(v) else f"{v / unit_s:,.1f}"

        def band(r: Mapping[str, Any], fig: str, fmt: Callable[[float], str]) -> str:
            return f"{fmt(r[fig + '_median'])} [{fmt(r[fig + '_p10'])}, {fmt(r[fig + '_p90'])}]"

        header = [
            *self.grid_keys,
            "payload",
            "n",
            f"first preview ({unit})",
            f"MS-SSIM≥0.8 ({unit})",
            f"MS-SSIM≥0.9 ({unit})",
            "reached 0.9",
            "final MS-SSIM",
            "final PSNR (dB)",
        ]
        lines = [header]
        for r in self.summary:
            lines.append(
                [
                    *(str(_cell(r[k])) for k in self.grid_keys),
                    r["payload"],
                    str(r["replications"]),
                    band(r, "time_to_first_preview_s", t),
                    band(r, "time_to_msssim_0.8_s", t),
                    band(r, "time_to_msssim_0.9_s", t),
                    f"{100 * r['time_to_msssim_0.9_s_reached_frac']:.0f}%",
                    band(r, "final_ms_ssim", lambda v: f"{v:.3f}"),
                    band(r, "final_psnr_db", lambda v: f"{v:.1f}"),
                ]
            )
        widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
        text = [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in lines
        ]
        s = self.stats
        text.insert(1, "-" * len(text[0]))
        text.append("")
        text.append(
            f"{self.scenario}: median [p10, p90] over {self.seeds} seeds × "
            f"{len(self.images)} image(s) per row; 'never' = not reached by that share"
        )
        text.append(
            f"replications: {s['replications']} ({s['run']} run, {s['resumed']} "
            f"resumed) in {s['elapsed_s']:.1f} s; decode cache hits "
            f"{s['decode_cache_hits']} / misses {s['decode_cache_misses']}"
        )
        return "\n".join(text)

    # -- plots -----------------------------------------------------------------------------------
    def _groups(self) -> list[tuple[str, int, str, list[dict[str, Any]]]]:
        """(label, point index, payload, results) per summary row, in table order."""
        groups: dict[tuple, list] = {}
        for rep, res in self._rows:
            groups.setdefault((rep.point_index, rep.payload), []).append((rep, res))
        out = []
        for (point_index, payload), items in groups.items():
            where = ", ".join(f"{k}={_cell(v)}" for k, v in items[0][0].point)
            label = f"{where} · {payload}" if where else payload
            out.append((label, point_index, payload, [res for _, res in items]))
        return out

    def band_figure(self, axis: str = "time", metrics: Sequence[str] = ("ms_ssim", "psnr_db")):
        """A matplotlib Figure: median line and 10–90% band of quality against ``axis``
        (``"time"`` or ``"packets"``: messages sent) per grid point and payload.

        Colour is the grid point, line style the payload. Uses no pyplot backend, so it works
        in scripts and shows inline in a notebook.
        """
        from matplotlib.figure import Figure

        if axis not in ("time", "packets"):
            raise SweepError(f"axis = {axis!r}: expected 'time' or 'packets'")
        bad = [m for m in metrics if m not in ("ms_ssim", "psnr_db")]
        if bad:
            raise SweepError(f"metrics: unknown {bad[0]!r}; expected 'ms_ssim' or 'psnr_db'")
        groups = self._groups()
        x, unit_s, xlabel = self._x_axis(axis, groups)
        fig = Figure(figsize=(8.5, 3.2 * len(metrics) + 0.8), layout="constrained")
        axes = fig.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
        styles = {"rvq": "-", "avif": "--", "jxl": "-.", "jpeg": ":"}
        colours: dict[int, str] = {}  # one colour per grid point (values may be lists)
        for label, point_index, payload, results in groups:
            colour = colours.setdefault(point_index, f"C{len(colours) % 10}")
            for ax, metric in zip(axes, metrics, strict=True):
                curves = np.array([_curve(res, metric, axis, x * unit_s) for res in results])
                if metric == "psnr_db":
                    curves = np.minimum(curves, PSNR_PLOT_CAP_DB)
                p10, med, p90 = np.percentile(curves, [10, 50, 90], axis=0)
                ax.fill_between(x, p10, p90, step="post", color=colour, alpha=0.15, lw=0)
                ax.step(
                    x, med, where="post", color=colour, ls=styles.get(payload, "-"), label=label
                )
        for ax, metric in zip(axes, metrics, strict=True):
            ax.set_ylabel("MS-SSIM (unitless, 0–1)" if metric == "ms_ssim" else "PSNR (dB)")
            ax.grid(alpha=0.3)
        axes[-1].set_xlabel(xlabel)
        axes[0].set_title(
            f"{self.scenario}: median and 10–90% band over "
            f"{self.seeds * len(self.images)} replications per line "
            f"(mid-grey until the first picture)",
            fontsize=9,
        )
        axes[0].legend(fontsize=7, loc="best")
        return fig

    def _x_axis(self, axis: str, groups) -> tuple[np.ndarray, float, str]:
        results = [res for *_, rs in groups for res in rs]
        if axis == "packets":
            n_max = max((r["figures"]["messages_sent"] for r in results), default=0)
            # one step past the last message, so that the final level shows as a segment
            return (
                np.arange(n_max + 2, dtype=float),
                1.0,
                "messages sent on the link (count, repeats included)",
            )
        ends = [
            row[6]
            for r in results
            for row in r["rows"]
            if row[9] is not None and row[6] is not None
        ]  # preview arrival times
        t_max = max(ends, default=0.0) * 1.05 or 1.0
        unit_s, unit = _time_unit([t_max])
        return np.linspace(0.0, t_max / unit_s, 400), unit_s, f"time since the start ({unit})"

    def write(self, out_dir: str | Path | None = None, plots: bool = True) -> Path:
        """Write the tables, plots and sweep.json into ``out_dir`` (default: the sweep's)."""
        out = Path(out_dir) if out_dir is not None else self.out_dir
        if out is None:
            raise SweepError("out_dir: the sweep ran without one; give a folder to write to")
        _atomic_write(out / "results.csv", self.results_csv().encode())
        _atomic_write(out / "replications.csv", self.replications_csv().encode())
        _atomic_write(out / "summary.csv", self.summary_csv().encode())
        if plots and self._rows:
            import io

            for axis, name in (
                ("packets", "quality_vs_packets.png"),
                ("time", "quality_vs_time.png"),
            ):
                buf = io.BytesIO()
                self.band_figure(axis).savefig(buf, format="png", dpi=110)
                _atomic_write(out / name, buf.getvalue())
        info = {
            "scenario": self.scenario,
            "grid": self.grid,
            "payloads": list(self.payloads),
            "images": self.images,
            "seeds": self.seeds,
            "root_seed": self.root_seed,
            "stats": self.stats,
        }
        _atomic_write(out / "sweep.json", (json.dumps(info, indent=2, default=str) + "\n").encode())
        return out


def _curve(res: Mapping[str, Any], metric: str, axis: str, x: np.ndarray) -> np.ndarray:
    """One replication's quality at each x: the latest preview by then, else the grey floor.

    On the packets axis a preview counts from the transmission whose copy completed it.
    """
    col = ROW_COLUMNS.index(metric)
    floor = res["floor"][metric]
    previews = [(row[4], row[6], row[9], row[col]) for row in res["rows"] if row[9] is not None]
    out = np.full(len(x), floor, dtype=float)
    if not previews:
        return out
    if axis == "time":
        previews.sort(key=lambda p: p[2])  # preview number = arrival order
        times = np.array([p[1] for p in previews])
        scores = np.array([p[3] for p in previews], dtype=float)
        idx = np.searchsorted(times, x, side="right") - 1
    else:
        # the newest preview (highest number) among those triggered by the first n messages
        previews.sort(key=lambda p: (p[0], p[2]))
        sent = np.array([p[0] for p in previews])
        best = np.maximum.accumulate(np.array([p[2] for p in previews]))
        by_number = {p[2]: p[3] for p in previews}
        scores = np.array([by_number[b] for b in best], dtype=float)
        idx = np.searchsorted(sent, x, side="right") - 1
    have = idx >= 0
    out[have] = scores[idx[have]]
    return out


def _summarise(grid_keys: Sequence[str], groups: Mapping[tuple, list]) -> list[dict[str, Any]]:
    table = []
    for (_, payload), items in groups.items():
        point = dict(items[0][0].point)
        figs = [res["figures"] for _, res in items]
        row: dict[str, Any] = {
            **{k: point[k] for k in grid_keys},
            "payload": payload,
            "replications": len(figs),
        }
        for name in TIME_FIGURES:
            values = sorted(math.inf if f[name] is None else f[name] for f in figs)
            for label, q in QUANTILES:
                row[f"{name}_{label}"] = _quantile(values, q)
            row[f"{name}_reached_frac"] = sum(f[name] is not None for f in figs) / len(figs)
        for name in SCORE_FIGURES:
            values = sorted(f[name] for f in figs)
            for label, q in QUANTILES:
                row[f"{name}_{label}"] = _quantile(values, q)
        row["no_picture_frac"] = sum(f["no_picture"] for f in figs) / len(figs)
        row["messages_sent_median"] = _quantile(sorted(f["messages_sent"] for f in figs), 0.5)
        table.append(row)
    return table


# ---------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------


def _resolve_images(images: Any) -> list[_Image]:
    from codec import load_image

    if images is None:
        from satlink.replay import default_image

        items: list[tuple[str, Any]] = [("astronaut", default_image())]
    elif isinstance(images, str | Path):
        p = Path(images)
        if p.is_dir():
            from codec.eval import IMAGE_SUFFIXES

            files = sorted(
                f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
            )
            if not files:
                raise SweepError(f"images: no image files ({', '.join(IMAGE_SUFFIXES)}) in {p}")
            items = [(f.name, f) for f in files]
        elif p.is_file():
            items = [(p.name, p)]
        else:
            raise SweepError(f"images: {p} is neither an image file nor a folder")
    elif isinstance(images, np.ndarray):
        items = [("image", images)]
    elif isinstance(images, Mapping):
        items = [(str(k), v) for k, v in images.items()]
    else:
        items = [
            (Path(x).name if isinstance(x, str | Path) else f"image{i}", x)
            for i, x in enumerate(images)
        ]
    if not items:
        raise SweepError("images: the list is empty")
    out, seen = [], set()
    for label, src in items:
        if label in seen:
            raise SweepError(f"images: two images are labelled {label!r}; labels must differ")
        seen.add(label)
        pixels = load_image(src)
        pixels.setflags(write=False)
        out.append(_Image(label, pixels, _digest(str(pixels.shape).encode(), pixels.tobytes())))
    return out


def _base_scenario(scenario: str | Path | Scenario, overrides: Sequence[str]) -> Scenario:
    if isinstance(scenario, Scenario):
        if not overrides:
            return scenario
        data = apply_overrides(scenario.to_dict(), overrides)
        return parse_scenario(data, scenario.origin, (*scenario.overrides, *overrides))
    return load_scenario(scenario, overrides=overrides)


def _schema() -> dict[str, bool]:
    """Every scenario key a grid may name -> whether it is a table (from the config classes,
    so keys that a file leaves at their default count too)."""
    import dataclasses
    import typing

    from satlink.channel import LinkConfig
    from satlink.linkbudget import BudgetConfig
    from satlink.scenario import BUDGET_DERIVED_KEYS, PacketsConfig

    out: dict[str, bool] = {}

    def walk(cls: Any, prefix: str, skip: Sequence[str] = ()) -> None:
        out[prefix] = True
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in skip:
                continue
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, f"{prefix}.{f.name}")
            else:
                out[f"{prefix}.{f.name}"] = False

    walk(PacketsConfig, "packets")
    walk(LinkConfig, "channel", skip=("budget",))  # [budget] is its own table
    walk(BudgetConfig, "budget", skip=BUDGET_DERIVED_KEYS)
    return out


def _check_grid_keys(grid: Mapping[str, list], source: str) -> None:
    schema = _schema()
    for key in grid:
        if key not in schema:
            parent = key.rpartition(".")[0]
            known = sorted(k.rpartition(".")[2] for k in schema if k.rpartition(".")[0] == parent)
            where = (
                f"keys in [{parent}]: {', '.join(known)}"
                if known
                else "top-level tables: packets, channel, budget"
            )
            raise SweepError(f"grid key {key!r} does not exist in scenario {source}; {where}")
        if schema[key]:
            inner = next(k for k in schema if k.startswith(key + "."))
            raise SweepError(f"grid key {key!r} is a table; sweep a key inside it, e.g. {inner}")


def _point_scenarios(base: Scenario, grid: Mapping[str, list]) -> list[tuple[dict, Scenario]]:
    _check_grid_keys(grid, base.origin)
    base_dict = base.to_dict()

    def build(point: Mapping[str, Any]) -> Scenario:
        data = copy.deepcopy(base_dict)
        for k, v in point.items():
            _set_key(data, k, v)
        # the base's overrides only: an error is about a grid key, and says so itself
        return parse_scenario(data, base.origin, base.overrides)

    def where(point: Mapping[str, Any]) -> str:
        return ", ".join(f"{k} = {_toml_literal(v, k)}" for k, v in point.items())

    # Each value in the context of the first grid point, so that an error names the key and
    # value at fault, while keys that only make sense together (visibility.mode = "windows"
    # with windows_s) are still checked together.
    first = {k: values[0] for k, values in grid.items()}
    checks = [first] + [{**first, k: v} for k, values in grid.items() for v in values[1:]]
    for point in checks:
        try:
            build(point)
        except ScenarioError as exc:
            changed = [k for k in point if point[k] is not first[k]] or list(point)
            if len(changed) == 1:
                k = changed[0]
                raise SweepError(f"grid key {k!r} = {_toml_literal(point[k], k)}: {exc}") from None
            raise SweepError(f"grid point {where(point)}: {exc}") from None
    out = []
    for point in expand_grid(grid):
        try:
            out.append((point, build(point)))
        except ScenarioError as exc:
            raise SweepError(f"grid point {where(point)}: {exc}") from None
    return out


def _check_int(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
        raise SweepError(f"{name} = {value!r}: expected an integer >= {lo}")
    return int(value)


def _check_payloads(payloads: Sequence[str] | str) -> tuple[str, ...]:
    items = (payloads,) if isinstance(payloads, str) else tuple(payloads)
    if not items:
        raise SweepError(f"payloads: give at least one of {', '.join(PAYLOADS)}")
    for p in items:
        if p not in PAYLOADS:
            raise SweepError(f"payloads: unknown payload {p!r}; choose from {', '.join(PAYLOADS)}")
    if len(set(items)) != len(items):
        raise SweepError(f"payloads: {list(items)} lists a payload twice")
    return items


def _load_done(path: Path, key: str) -> dict[str, Any] | None:
    try:
        res = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # missing or unreadable: run it (again)
    ok = isinstance(res, dict) and res.get("format") == FORMAT_VERSION and res.get("key") == key
    return res if ok else None


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
    model: str | Path = DEFAULT_MODEL,
    decode_cache: bool = True,
    cache_entries: int = 4096,
    chunk_size: int | None = None,
    plots: bool = True,
) -> SweepResult:
    """Run (or resume) a Monte Carlo sweep and, with ``out_dir``, write its tables and plots.

    ``grid``: ``["channel.loss.p=0,0.1"]`` or ``{"channel.loss.p": [0, 0.1]}``; ``seeds``:
    replicates per grid point, image and payload; ``images``: a folder, a file, an array, a
    list, or ``{label: array or path}`` (default: the built-in astronaut); ``workers``: local
    processes (0 runs in this process); ``scheduler``: a Dask address such as
    ``tcp://host:8786`` (then ``workers`` is ignored); ``payloads``: any of
    ``rvq avif jxl jpeg``; ``budget_packets``: packets for the classical files (default: as
    many as the RVQ code); ``overrides``: ``KEY=VALUE`` strings applied before the grid;
    ``decode_cache=False`` decodes every preview afresh (the benchmark's baseline).

    >>> r = sweep("bds3-rsmc-geo", grid={"channel.loss.p": [0.0, 0.2]}, seeds=10,
    ...           payloads=["rvq", "jpeg"], workers=0)                  # doctest: +SKIP
    >>> [row["final_ms_ssim_median"] for row in r.summary]               # doctest: +SKIP
    """
    t_start = time.perf_counter()
    seeds = _check_int("seeds", seeds, 1)
    workers = _check_int("workers", workers, 0)
    cache_entries = _check_int("cache_entries", cache_entries, 1)
    if budget_packets is not None:
        budget_packets = _check_int("budget_packets", budget_packets, 1)
    if chunk_size is not None:
        chunk_size = _check_int("chunk_size", chunk_size, 1)
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
        raise SweepError(f"scheduler = {scheduler!r}: expected an address like tcp://host:8786")
    payload_list = _check_payloads(payloads)
    seed_list = replication_seeds(root_seed, seeds)
    grid_values = parse_grid(grid)
    base = _base_scenario(scenario, list(overrides))
    points = _point_scenarios(base, grid_values)
    image_list = _resolve_images(images)
    fingerprint = _model_fingerprint(model)

    # Every replication in table order: point, payload, image, replicate.
    reps: list[Replication] = []
    groups_in: list[tuple[_Work, str, list[Replication]]] = []
    for pi, (point, sc) in enumerate(points):
        sc_dict = sc.to_dict()
        physics = {k: v for k, v in sc_dict.items() if k != "scenario"}  # names don't matter
        sc_json = json.dumps(sc_dict, sort_keys=True)
        for payload in payload_list:
            budget = budget_packets if payload != "rvq" else None
            for ii, img in enumerate(image_list):
                work = _Work(sc_json, sc.origin, img.digest, str(model), fingerprint)
                group = []
                for r, seed in enumerate(seed_list):
                    key = _digest(
                        _canonical(
                            {
                                "format": FORMAT_VERSION,
                                "scenario": physics,
                                "image": img.digest,
                                "payload": payload,
                                "budget_packets": budget,
                                "seed": seed,
                                "model": fingerprint,
                            }
                        )
                    )
                    group.append(
                        Replication(pi, tuple(point.items()), payload, img.label, ii, r, seed, key)
                    )
                reps.extend(group)
                groups_in.append((work, payload, group))

    out = Path(out_dir) if out_dir is not None else None
    store = out / "replications" if out is not None else None
    if store is not None:
        try:
            store.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SweepError(f"out_dir: cannot create {store}: {exc.strerror or exc}") from None
    results: dict[str, dict[str, Any]] = {}
    if store is not None:
        for rep in reps:
            if (
                rep.key not in results
                and (done := _load_done(store / f"{rep.key}.json", rep.key)) is not None
            ):
                results[rep.key] = done
    resumed = len(results)

    # Phase 1 jobs: each payload encoded (or fitted) once per image, packet layout and budget,
    # only for groups with work left. Phase 2 jobs: the replications still to run, chunked;
    # equal keys (the same pixels under two labels) run once.
    shared: dict[str, Any] = {img.digest: img.pixels for img in image_list}
    preps: dict[str, _PrepJob] = {}
    chunk_specs: list[tuple[_Chunk, str]] = []
    todo_keys: set[str] = set()
    slots = max(workers, 1) if scheduler is None else 8
    n_todo = sum(1 for rep in reps if rep.key not in results)
    # Several chunks per worker balance the load; at most 16 replications each, because the
    # progress bar moves and an interruption loses work one chunk at a time.
    size = chunk_size or max(1, min(16, math.ceil(n_todo / (slots * 8))))
    for work, payload, group in groups_in:
        pending = [r for r in group if r.key not in results and r.key not in todo_keys]
        if not pending:
            continue
        todo_keys.update(r.key for r in pending)
        packets = json.loads(work.scenario_json)["packets"]
        budget = budget_packets if payload != "rvq" else None
        prep_key = "prep-" + _digest(
            _canonical([work.image_digest, payload, packets, budget, work.model_fingerprint])
        )
        preps.setdefault(prep_key, _PrepJob(work, payload, budget, prep_key))
        for i in range(0, len(pending), size):
            part = pending[i : i + size]
            chunk = _Chunk(
                work,
                decode_cache,
                cache_entries,
                tuple(r.seed for r in part),
                tuple(r.key for r in part),
            )
            chunk_specs.append((chunk, prep_key))

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=len(set(r.key for r in reps)),
            initial=resumed,
            unit="rep",
            desc=f"sweep {base.name}",
            dynamic_ncols=True,
        )
    counters = {"hits": 0, "misses": 0, "run": 0}

    def prep_sink(output: tuple[str, _Prepared]) -> None:
        shared[output[0]] = output[1]

    def sink(output: _ChunkOutput) -> None:
        for key, res in zip(output.keys, output.results, strict=True):
            res["key"] = key
            results[key] = res
            if store is not None:
                _atomic_write(store / f"{key}.json", _canonical(res))
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
    try:
        if chunk_specs:
            runner: _Runner
            if scheduler is not None:
                runner = _DaskRunner(scheduler.strip())
            elif workers == 0:
                runner = _InlineRunner()
            else:
                runner = _PoolRunner(min(workers, len(chunk_specs)), str(model), fingerprint)
            with runner:
                if bar is not None:
                    bar.set_postfix_str("encoding payloads")
                runner.run(
                    _run_prep,
                    [(job, (job.work.image_digest,)) for job in preps.values()],
                    shared,
                    prep_sink,
                )
                prep_s = time.perf_counter() - t_run
                if bar is not None:
                    bar.set_postfix_str("replaying")
                runner.run(
                    _run_chunk,
                    [
                        (chunk, (chunk.work.image_digest, prep_key))
                        for chunk, prep_key in chunk_specs
                    ],
                    shared,
                    sink,
                )
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

    groups: dict[tuple, list] = {}
    for rep in reps:
        groups.setdefault((rep.point_index, rep.payload), []).append((rep, results[rep.key]))
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
        "replications_per_s": counters["run"] / run_s if counters["run"] and run_s > 0 else None,
        "decode_cache": decode_cache,
        "decode_cache_hits": counters["hits"],
        "decode_cache_misses": counters["misses"],
        "decode_cache_hit_rate": counters["hits"] / lookups if lookups else None,
        "workers": workers if scheduler is None else None,
        "scheduler": scheduler,
        "chunks": len(chunk_specs),
        "prepare_s": prep_s,
        "model": str(model),
        "model_fingerprint": fingerprint,
    }
    result = SweepResult(
        base.name,
        grid_values,
        payload_list,
        [i.label for i in image_list],
        seeds,
        int(root_seed),
        replication_rows,
        _summarise(list(grid_values), groups),
        out,
        stats,
        [(rep, results[rep.key]) for rep in reps],
    )
    if out is not None:
        result.write(plots=plots)
    return result
