"""The worker side of a sweep: per-process caches, payload preparation and one replication.

Entry points :func:`run_prep` (first phase: a payload's packets, once per image and packet
layout) and :func:`run_chunk` (second phase: replications that share scenario, image and
payload) run wherever the executor puts them: in this process, a pool process or a Dask worker.

>>> one_thread()   # torch on one thread: every float identical wherever a replication runs
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from satlink.receiver import BoundedLRU, DecodeCache
from satlink.replay import ON_AIR_OUTCOMES, Payload, encode_payload, summarise, transmit
from satlink.scenario import Scenario, parse_scenario
from satlink.sweep.grid import SweepError, digest
from satlink.sweep.results import ROW_COLUMNS, TIME_FIGURES
from satlink.sweep.store import FORMAT_VERSION


@dataclass(frozen=True)
class Work:
    """What every job of one group needs: the grid point's scenario, the image and the codec."""

    scenario_json: str  # the grid point's resolved scenario (Scenario.to_dict as JSON)
    source: str  # for error messages
    image_digest: str
    model: str
    model_fingerprint: str
    effort: int = 0  # encoder-side refinement steps (codec.encode's effort)
    beam_width: int = 1  # paths kept by the encoder's beam search (codec.encode's beam_width)


@dataclass(frozen=True)
class PrepJob:
    """Encode (or fit a classical file to the budget) once, before the replications."""

    work: Work
    payload: str
    budget_packets: int | None
    key: str


@dataclass(frozen=True)
class Chunk:
    """Replications that share scenario, image and payload: a unit of work for one worker."""

    work: Work
    decode_cache: bool
    cache_entries: int
    seeds: tuple[int, ...]
    keys: tuple[str, ...]


@dataclass
class ChunkOutput:
    keys: tuple[str, ...]
    results: list[dict[str, Any]]
    cache_hits: int
    cache_misses: int


def model_fingerprint(model: str | Path) -> str:
    """Hash of the weight file: a retrained model must not reuse old replication files."""
    from codec.zoo import weights_path

    return digest(weights_path(str(model)).read_bytes())


class ScoresOnlyCache(DecodeCache):
    """A DecodeCache that keeps the scores but not the decoded pixels: a sweep never shows the
    pictures, and without them an entry is a few hundred bytes instead of an image."""

    def put(self, key: bytes, value: tuple[np.ndarray, dict[str, float]]) -> None:
        super().put(key, (None, value[1]))


class WorkerState:
    """Caches of one worker thread: parsed scenarios, payloads, floors and decode caches."""

    def __init__(self) -> None:
        self.scenarios = BoundedLRU(256)
        self.payloads = BoundedLRU(64)
        self.floors = BoundedLRU(64)
        self.caches = BoundedLRU(16)  # one ScoresOnlyCache per image


_local = threading.local()
_codec_lock = threading.Lock()
_codecs: dict[tuple[str, str], Any] = {}


def worker_state() -> WorkerState:
    """This thread's caches. Per thread: a Dask worker may run several tasks at once, and
    DecodeCache is not thread-safe. Processes get one state each anyway."""
    st = getattr(_local, "state", None)
    if st is None:
        st = _local.state = WorkerState()
    return st


def load_worker_codec(model: str, fingerprint: str) -> Any:
    """The model, loaded once per process, after checking its weights are the sweep's."""
    with _codec_lock:
        key = (model, fingerprint)
        if key not in _codecs:
            if model_fingerprint(model) != fingerprint:
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


def one_thread() -> None:
    """Torch on one thread: parallelism comes from workers, and one thread everywhere keeps
    every float identical wherever a replication runs."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def init_process() -> None:
    """Pool worker start: one torch thread, and leave Ctrl-C to the parent (it cancels)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    one_thread()


def warm_up(model: str, fingerprint: str) -> None:
    """Load the model in a fresh worker while the first jobs are being prepared."""
    one_thread()
    load_worker_codec(model, fingerprint)


def prepare(
    state: WorkerState,
    pixels: np.ndarray,
    image_digest: str,
    payload: str,
    sc: Scenario,
    budget_packets: int | None,
    codec: Any,
    effort: int = 0,
    beam_width: int = 1,
) -> Payload:
    """The payload's packets on this grid point's packet layout (cached per worker thread).

    A classical file's default budget is as many packets as the RVQ code of this image takes
    here; a file that does not fit is an outcome (nothing is sent), not an error.
    """
    p = sc.packets
    key = (image_digest, payload, p.size_bytes, p.fragment_bytes, p.order, p.interleave, effort)
    key += (sc.fec, beam_width)  # the plan's repair packets follow the [fec] table
    if payload != "rvq" and budget_packets is None:
        rvq = prepare(state, pixels, image_digest, "rvq", sc, None, codec, effort, beam_width)
        budget_packets = rvq.info["packets"]
    return state.payloads.remember(
        (*key, budget_packets),
        lambda: encode_payload(
            pixels,
            payload,
            sc,
            codec=codec,
            budget_packets=budget_packets,
            message_id=1,
            effort=effort,
            beam_width=beam_width,
        ),
    )


def floor_scores(state: WorkerState, pixels: np.ndarray, image_digest: str) -> dict[str, float]:
    """Scores of the mid-grey picture that stands for 'nothing received yet'."""

    def make() -> dict[str, float]:
        from codec.classical import MISS_GREY
        from codec.metrics import ms_ssim, psnr

        grey = np.full_like(pixels, MISS_GREY)
        return {"psnr_db": psnr(pixels, grey), "ms_ssim": ms_ssim(pixels, grey)}

    return state.floors.remember(image_digest, make)


def _nan_to_none(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def figures(
    summary: Mapping[str, Any], floor: Mapping[str, float], classical: bool = False
) -> dict[str, Any]:
    """A replication's headline figures (``replications.csv``) from its replay summary; with no
    picture the final scores are the grey floor's. ``stage1_complete``: the first RVQ stage was
    whole at the end (a classical file: the file was)."""
    c = summary["counts"]
    no_picture = summary["previews"] == 0
    out = {k: summary[k] for k in TIME_FIGURES}
    out.update(
        final_ms_ssim=floor["ms_ssim"] if no_picture else summary["final_ms_ssim"],
        final_psnr_db=floor["psnr_db"] if no_picture else summary["final_psnr_db"],
        no_picture=no_picture,
        stage1_complete=not no_picture and (classical or summary["final_stages_complete"] >= 1),
        previews=summary["previews"],
        packets=c["packets"],
        messages_sent=c["transmissions"],
        delivered=c["delivered"],
        lost=c["lost"],
        corrupted=c["corrupted"],
        retransmitted=c["retransmitted"],
        dropped=c["dropped"],
    )
    return out


def replicate(
    sc: Scenario,
    pixels: np.ndarray,
    codec: Any,
    payload: Payload,
    seed: int,
    cache: DecodeCache | None,
    floor: Mapping[str, float],
) -> dict[str, Any]:
    """One replication: ``replay(sc, pixels, seed=seed)``'s own steps (transmit, summarise),
    minus files and pictures; the result is what the replication's JSON file holds."""
    base = {"format": FORMAT_VERSION, "seed": seed, "payload_info": payload.info}
    base["floor"] = dict(floor)
    if payload.plan is None:  # no classical file fits the budget: nothing is sent
        figs = {k: None for k in TIME_FIGURES}
        figs.update(
            final_ms_ssim=floor["ms_ssim"],
            final_psnr_db=floor["psnr_db"],
            no_picture=True,
            stage1_complete=False,
            previews=0,
            packets=0,
            messages_sent=0,
            delivered=0,
            lost=0,
            corrupted=0,
            retransmitted=0,
            dropped=0,
        )
        return {**base, "figures": figs, "rows": []}
    tx = transmit(
        sc, payload.plan, seed=seed, codec=codec, reference=pixels, cache=cache, keep_images=False
    )
    summary = summarise(sc, tx, seed=seed, codec=codec, image=pixels)
    rows, sent = [], 0
    for i, r in enumerate(tx.rows()):
        sent += r["outcome"] in ON_AIR_OUTCOMES
        event = {
            "event": i,
            "wire_seq": r["seq"],
            "packet_seq": r["packet_seq"],
            "attempt": r["attempt"],
            "messages_sent": sent,
            "t_tx_start_s": _nan_to_none(r["t_tx_start_s"]),
            "t_arrival_s": _nan_to_none(r["t_arrival_s"]),
            "outcome": r["outcome"],
            "rx_verdict": r["rx_verdict"] or None,
            "preview": r["preview"] if r["preview"] != "" else None,
            "psnr_db": r.get("psnr_db"),
            "ms_ssim": r.get("ms_ssim"),
        }
        rows.append([event[c] for c in ROW_COLUMNS])  # lists: the files stay small
    classical = payload.info.get("payload", "rvq") != "rvq"
    return {**base, "figures": figures(summary, floor, classical), "rows": rows}


def worker_scenario(state: WorkerState, work: Work) -> Scenario:
    """The grid point's scenario, parsed once per worker thread."""
    return state.scenarios.remember(
        work.scenario_json, lambda: parse_scenario(json.loads(work.scenario_json), work.source)
    )


def run_prep(job: PrepJob, pixels: np.ndarray) -> tuple[str, Payload]:
    """Worker entry point of the first phase: one payload's packets for one image and layout."""
    one_thread()
    state = worker_state()
    codec = load_worker_codec(job.work.model, job.work.model_fingerprint)
    sc = worker_scenario(state, job.work)
    payload = prepare(
        state,
        pixels,
        job.work.image_digest,
        job.payload,
        sc,
        job.budget_packets,
        codec,
        job.work.effort,
        job.work.beam_width,
    )
    return job.key, Payload(payload.plan, payload.info)  # without the code: less to ship


def run_chunk(chunk: Chunk, pixels: np.ndarray, payload: Payload) -> ChunkOutput:
    """Worker entry point of the second phase: replications of one group."""
    one_thread()
    state = worker_state()
    work = chunk.work
    codec = load_worker_codec(work.model, work.model_fingerprint)
    sc = worker_scenario(state, work)
    cache = None
    if chunk.decode_cache:
        cache = state.caches.remember(
            work.image_digest, lambda: ScoresOnlyCache(chunk.cache_entries)
        )
    hits0, misses0 = (cache.hits, cache.misses) if cache is not None else (0, 0)
    floor = floor_scores(state, pixels, work.image_digest)
    results = [replicate(sc, pixels, codec, payload, seed, cache, floor) for seed in chunk.seeds]
    hits, misses = (cache.hits - hits0, cache.misses - misses0) if cache is not None else (0, 0)
    return ChunkOutput(chunk.keys, results, hits, misses)
