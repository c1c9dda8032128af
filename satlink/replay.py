"""One replay: an image through the codec, the packetizer, a scenario's link and the receiver.

>>> from satlink.replay import replay
>>> result = replay("bds3-rsmc-geo", seed=1, out_dir="out")        # doctest: +SKIP
>>> result.summary["time_to_first_preview_s"]                        # doctest: +SKIP
60.25

A replay is three public steps, which :mod:`satlink.sweep` runs too (one code path, so a sweep's
replication and the replay of its seed give identical scores):

1. :func:`encode_payload`: the image as packets (the RVQ code, or a classical file fitted to a
   packet budget) and the transmit plan;
2. :func:`transmit`: the scenario's link carries the plan, the receiver takes every delivery and
   renders and scores a preview after each new packet;
3. :func:`summarise`: the headline figures and counts of ``summary.json``.

Scores are named ``psnr_db`` and ``ms_ssim`` (``final_psnr_db``, ``final_ms_ssim`` in the
summary) in every output.
"""

from __future__ import annotations

import contextlib
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import satlink
from satlink import report
from satlink.channel.visibility import Windows
from satlink.outdir import OutputFolder
from satlink.packets import (
    FORMAT_VERSION,
    TransmitPlan,
    byte_capacity,
    packetize,
    packetize_bytes,
    parse_packet,
    plan_transmission,
)
from satlink.receiver import Arrival, DecodeCache, Preview, Receiver, crc_check
from satlink.report.replay_files import PreviewStream
from satlink.result import ReplayResult, Transmission
from satlink.scenario import DEFAULT_SCENARIO, Scenario, load_scenario

if TYPE_CHECKING:
    # Types only: the codec pulls in torch (seconds); the steps that need it import it inside.
    from codec import Codec, ProgressiveCode

__all__ = [
    "MAX_PREVIEWS",
    "MSSSIM_TARGETS",
    "ON_AIR_OUTCOMES",
    "PAYLOADS",
    "REPLAY_FILES",
    "Payload",
    "PreviewLimitError",
    "default_image",
    "encode_payload",
    "replay",
    "summarise",
    "transmit",
    "write_outputs",
]

MSSSIM_TARGETS = (0.8, 0.9)  # the summary's time_to_msssim_<target>_s figures
# Trace outcomes that put a message on the wire (drops and visibility waits do not).
ON_AIR_OUTCOMES = ("delivered", "lost", "corrupted", "retransmitted", "abandoned")
PAYLOADS: tuple[str, ...] = ("rvq", "avif", "jxl", "jpeg")
# Previews a replay renders (one per packet) unless asked for more: each is a PNG on disk and a
# decode; the 19-byte-packet plan of a 768×512 picture would make 5,120 of them.
MAX_PREVIEWS = 1000
# Every file of a replay folder besides previews/NNN.png (checked up front against the user's
# own files; a writer added to write_outputs must add its file here).
REPLAY_FILES: tuple[str, ...] = (
    "summary.json",
    "packets.csv",
    "quality_vs_packets.png",
    "quality_vs_time.png",
    "timeline.png",
    "contact_sheet.png",
    "progressive.gif",
    "packets.pcap",
    "report.html",
)


class PreviewLimitError(ValueError):
    """A replay plan with more previews than the stated limit (``max_previews``)."""


def default_image() -> np.ndarray:
    """The built-in source image: scikit-image's astronaut (512×512, public domain, NASA).

    >>> default_image().shape
    (512, 512, 3)
    """
    import importlib.util

    from PIL import Image

    # Read scikit-image's bundled PNG directly: importing skimage.data pulls in skimage.io and
    # scipy, 0.2-0.4 s of a replay's start-up for one file.
    spec = importlib.util.find_spec("skimage")
    for root in (spec and spec.submodule_search_locations) or ():
        path = Path(root) / "data" / "astronaut.png"
        if path.is_file():
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
    from skimage import data

    return data.astronaut()


@dataclass
class Payload:
    """A payload's packets on one packet layout, ready to send.

    ``plan`` is None when no classical file fits the budget: nothing is sent. ``info`` goes into
    the summary: ``payload``, ``packets`` and for a classical file ``budget_packets``, ``fits``,
    ``file_bytes``, ``quality`` and ``scale``.
    """

    plan: TransmitPlan | None
    info: dict[str, Any]
    code: ProgressiveCode | None = field(default=None, repr=False)  # the RVQ code, if any

    @property
    def fits(self) -> bool:
        return self.plan is not None


def encode_payload(
    image: np.ndarray,
    payload: str,
    scenario: Scenario,
    *,
    codec: Codec,
    budget_packets: int | None = None,
    message_id: int = 1,
    effort: int = 0,
    beam_width: int = 1,
) -> Payload:
    """Packets for the RVQ code or for a classical file (``avif``, ``jxl``, ``jpeg``).

    A classical file is the best that fits ``budget_packets`` packets (default: as many as the
    RVQ code of this image takes on this packet layout); when none fits, ``plan`` is None.
    ``effort`` > 0 refines the RVQ encoding for this picture, ``beam_width`` > 1 searches its
    codes with a beam (both as ``codec.Codec.encode``).
    """
    size = scenario.packets.size_bytes
    if payload == "rvq":
        code = codec.encode(image, effort=effort, beam_width=beam_width)
        packets = packetize(
            code,
            size,
            message_id=message_id,
            order=scenario.packets.order,
            interleave=scenario.packets.interleave,
        )
        # Every packet that carries first-stage indices (the one that ends stage 1 may begin
        # stage 2: packet format 2).
        reliable = [bool((parse_packet(p).stages == 0).any()) for p in packets]
        info = {
            "payload": "rvq",
            "packets": len(packets),
            "effort": effort,
            "beam_width": beam_width,
        }
        return Payload(plan_transmission(packets, scenario, reliable), info, code)
    if payload not in PAYLOADS:
        raise ValueError(f"payload {payload!r}: choose from {', '.join(PAYLOADS)}")
    from codec.classical import CLASSICAL_CODECS, fit_classical
    from satlink.packets import CONTENT_TYPES

    if budget_packets is None:
        budget_packets = len(
            # the count depends only on the image size, so no refinement (effort) is spent
            packetize(codec.encode(image), size, order=scenario.packets.order, message_id=0)
        )
    content_type = CLASSICAL_CODECS[payload].content_type
    if content_type not in CONTENT_TYPES.values():  # the packet header must be able to say it
        raise ValueError(f"payload {payload!r}: no packet content type for {content_type}")
    fit = fit_classical(image, payload, budget_packets * byte_capacity(size))
    info: dict[str, Any] = {
        "payload": payload,
        "budget_packets": budget_packets,
        "fits": not fit.miss,
    }
    if fit.miss:
        return Payload(None, {**info, "packets": 0})
    packets = packetize_bytes(fit.data, size, message_id=message_id, content_type=content_type)
    info.update(
        packets=len(packets), file_bytes=len(fit.data), quality=fit.quality, scale=fit.scale
    )
    return Payload(plan_transmission(packets, scenario, [True] * len(packets)), info)


def transmit(
    scenario: Scenario,
    plan: TransmitPlan,
    *,
    seed: int,
    codec: Codec,
    reference: np.ndarray | None,
    cache: DecodeCache | None = None,
    keep_images: bool = True,
    perceptual: Mapping[str, object] | None = None,
    on_arrival: Callable[[Arrival], bool | None] | None = None,
    interruptible: bool = False,
) -> Transmission:
    """Run the scenario's link on ``plan`` and hand every delivery to a receiver, in arrival
    order; the receiver scores its previews against ``reference``.

    ``seed`` decides the link's randomness (``SeedSequence(seed)``). With ``interruptible``, a
    Ctrl-C ends the run early and the result says so (``interrupted``) and holds what arrived;
    otherwise it propagates. ``on_arrival`` returning False ends the run the same way (its
    caller can no longer keep up, e.g. the disk is full).
    """
    fragmented = scenario.packets.fragment_bytes is not None
    rx = Receiver(
        codec,
        reference,
        packet_size_bytes=scenario.packets.size_bytes,
        fragmented=fragmented,
        perceptual=perceptual,
        cache=cache,
        keep_images=keep_images,
    )
    tx = Transmission(plan, rx, [], None)
    link = scenario.build_link(np.random.SeedSequence(seed), integrity_check=crc_check(fragmented))
    run = link.stream(plan.messages, plan.reliable)
    try:
        for delivery in run:
            arrival = rx.receive(delivery.payload, delivery.t_arrival_s)
            arrival.wire_seq = delivery.seq  # the receiver sees bytes; the link knows the slot
            if delivery.payload != plan.messages[delivery.seq]:
                tx.received_bytes[(delivery.seq, delivery.t_arrival_s)] = delivery.payload
            tx.arrivals.append(arrival)
            if on_arrival is not None and on_arrival(arrival) is False:
                tx.interrupted = True
                return tx
    except KeyboardInterrupt:
        if not interruptible:
            raise
        tx.interrupted = True
    else:
        tx.trace = run.trace
    return tx


def _versions(codec: Codec) -> dict[str, str]:
    import simpy
    import torch

    return {
        "satlink": satlink.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "simpy": simpy.__version__,
        "model": codec.name,
        "model_id": str(codec.model_id),
        "packet_format": str(FORMAT_VERSION),
    }


def _first_time(previews: Sequence[Preview], pred) -> float | None:
    return next((p.t_arrival_s for p in previews if pred(p)), None)


def summarise(
    scenario: Scenario,
    transmission: Transmission,
    *,
    seed: int,
    codec: Codec,
    image: np.ndarray,
    image_label: str = "",
    payload_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``summary.json``: scenario, seed and versions, the headline figures (times to first
    preview, to each MS-SSIM target and to full quality; final scores) and the packet counts."""
    plan, previews = transmission.plan, transmission.previews
    outcomes = [r["outcome"] for r in transmission.trace_rows]
    verdicts = [a.verdict for a in transmission.arrivals]
    last = previews[-1] if previews else None
    final = last.scores if last else {}
    full = _first_time(previews, lambda p: p.indices_received == p.indices_total)
    # Layout (docs/OUTPUTS.md): what ran, the headline times, the final picture, the counts,
    # then the details (versions, the whole scenario). No key nests its own name.
    summary = {
        "scenario": scenario.name,
        "overrides": list(scenario.overrides),
        "seed": seed,
        "image": image_label,
        "image_height_px": int(image.shape[0]),
        "image_width_px": int(image.shape[1]),
        "payload": dict(payload_info or {}),
        "packet_size_bytes": scenario.packets.size_bytes,
        "time_to_first_preview_s": previews[0].t_arrival_s if previews else None,
        **{
            f"time_to_msssim_{target}_s": _first_time(
                previews, lambda p, t=target: p.scores.get("ms_ssim", -1) >= t
            )
            for target in MSSSIM_TARGETS
        },
        "time_to_full_quality_s": full,
        "final_psnr_db": final.get("psnr_db"),
        "final_ms_ssim": final.get("ms_ssim"),
        "final_stages_complete": last.stages_complete if last else 0,
        "previews": len(previews),
        "counts": {
            "packets": plan.packet_count,
            "wire_messages": len(plan.messages),
            # Wait and drop rows are events, not transmissions.
            "transmissions": sum(o in ON_AIR_OUTCOMES for o in outcomes),
            # messages put on the wire; each ends once: sent = delivered + lost + corrupted +
            # abandoned (the ARQ gave it up), and transmissions = sent + retransmitted
            "sent": sum(
                o in ON_AIR_OUTCOMES and r.get("attempt", 0) == 0
                for o, r in zip(outcomes, transmission.trace_rows, strict=True)
            ),
            "delivered": outcomes.count("delivered"),
            "lost": outcomes.count("lost"),
            # The receiver's CRC decides what is corrupt (the link asks it, crc_check); a
            # corrupted copy the ARQ repeats counts as retransmitted, and in corrupted_copies.
            "corrupted": outcomes.count("corrupted"),
            "corrupted_copies": verdicts.count("corrupted"),
            "retransmitted": outcomes.count("retransmitted"),
            "abandoned": outcomes.count("abandoned"),
            "dropped": outcomes.count("dropped-queue") + outcomes.count("dropped-visibility"),
            "waited_for_visibility": outcomes.count("waited-for-visibility"),
            "accepted": verdicts.count("accepted"),
            "duplicates": verdicts.count("duplicate"),
            "rejected": verdicts.count("rejected"),
        },
        "interrupted": transmission.interrupted,
        # e.g. the budget's PER and the applied loss differ by more than 10x
        "warnings": [w for w in (scenario.loss_warning(),) if w],
        "versions": _versions(codec),
        "scenario_config": scenario.to_dict(),
    }
    return summary


def replay(
    scenario: str | Path | Scenario = DEFAULT_SCENARIO,
    image: str | Path | np.ndarray | None = None,
    *,
    seed: int = 0,
    out_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    codec: Codec | None = None,
    progress: bool = False,
    order: str | None = None,
    interleave: bool | None = None,
    payload: str = "rvq",
    budget_packets: int | None = None,
    lpips_weights: str | Path | None = None,
    dists_weights: str | Path | None = None,
    cache: DecodeCache | None = None,
    keep_images: bool | None = None,
    message_id: int = 1,
    effort: int = 0,
    beam_width: int = 1,
    max_previews: int | None = MAX_PREVIEWS,
) -> ReplayResult:
    """Replay one transfer and, with ``out_dir``, write the full report folder.

    ``scenario`` is a preset name, a TOML path or a :class:`Scenario`; ``overrides`` are
    ``key=value`` strings as on the command line. ``payload`` is ``"rvq"`` (the progressive
    code) or a classical file (``"avif"``, ``"jxl"``, ``"jpeg"``) of at most ``budget_packets``
    (default: as many as the RVQ code takes). ``effort`` > 0 refines the RVQ encoding of this
    picture by that many gradient steps (slower to encode, same decoder and packets);
    ``beam_width`` > 1 (at effort 0) chooses its codes with a beam search instead.

    With ``out_dir`` the folder must be new, empty or a satlink run's (:mod:`satlink.outdir`:
    the run owns only what it writes, and a second run into it at the same time is refused);
    previews stream to ``previews/NNN.png`` as they arrive and leave memory (``Preview.image``
    reads them back), unless ``keep_images=True``. Without ``out_dir`` every preview's image
    stays in memory unless ``keep_images=False``. A plan with more previews (packets) than
    ``max_previews`` is refused before anything is sent (None: no limit).
    """
    extra = list(overrides)
    if order is not None:
        extra.append(f'packets.order="{order}"')
    if interleave is not None:
        extra.append(f"packets.interleave={'true' if interleave else 'false'}")
    if isinstance(scenario, Scenario):
        sc = scenario.with_overrides(extra) if extra else scenario
    else:
        sc = load_scenario(scenario, overrides=extra)
    folder = OutputFolder(out_dir) if out_dir is not None else None
    if folder is not None:
        folder.check(_expected_files(folder.root))  # refused before the work, nothing written
    from codec import default_codec, load_image  # torch: seconds, so after the quick checks

    codec = codec or default_codec()
    if image is None:
        source, label = default_image(), "skimage astronaut (built-in)"
    else:
        # the codec's pixel limit is checked from the file's header, before decoding it
        source = load_image(image, max_pixels=codec.max_pixels)
        label = str(image) if isinstance(image, str | Path) else "array"
    perceptual = _perceptual(lpips_weights, dists_weights)  # bad weights: before any file

    encoded = encode_payload(
        source,
        payload,
        sc,
        budget_packets=budget_packets,
        message_id=message_id,
        codec=codec,
        effort=effort,
        beam_width=beam_width,
    )
    if encoded.plan is None:
        capacity = encoded.info["budget_packets"] * byte_capacity(sc.packets.size_bytes)
        raise ValueError(
            f"no {payload} file of {source.shape[1]}×{source.shape[0]} px fits "
            f"{encoded.info['budget_packets']} packets ({capacity} payload bytes)"
        )
    plan = encoded.plan
    _check_preview_count(plan.packet_count if payload == "rvq" else 1, max_previews, sc)
    if folder is not None:
        folder.claim(_expected_files(folder.root))
    stream = PreviewStream(folder, keep_images is True) if folder is not None else None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=plan.packet_count, unit="pkt", desc=f"replay {sc.name}", dynamic_ncols=True
        )

    def on_arrival(arrival: Arrival) -> bool:
        if arrival.preview is not None and stream is not None and not stream(arrival.preview):
            return False  # the disk is full: stop, keep what was written
        if bar is not None and arrival.verdict == "accepted":
            bar.update(1)
            if arrival.preview is not None and arrival.preview.scores:
                bar.set_postfix(
                    t=f"{arrival.t_arrival_s:,.0f}s",
                    msssim=f"{arrival.preview.scores['ms_ssim']:.3f}",
                )
        return True

    with folder if folder is not None else contextlib.nullcontext():
        try:
            tx = transmit(
                sc,
                plan,
                seed=seed,
                codec=codec,
                reference=source,
                cache=cache,
                keep_images=stream is not None or keep_images is not False,
                perceptual=perceptual,
                on_arrival=on_arrival,
                interruptible=True,
            )
        finally:
            if bar is not None:
                bar.close()
        if stream is not None:
            stream.settle(tx.receiver.previews, tx.arrivals)
        summary = summarise(
            sc,
            tx,
            seed=seed,
            codec=codec,
            image=source,
            image_label=label,
            payload_info=encoded.info,
        )
        rows = tx.rows()
        result = ReplayResult(
            sc,
            seed,
            summary,
            rows,
            tx.previews,
            tx.trace,
            tx.interrupted,
            folder.root if folder is not None else None,
            _visibility_windows(sc, rows),
            tx,
        )
        if folder is not None:
            _write_folder(result, folder, stream)
    return result


def _visibility_windows(sc: Scenario, rows: Sequence[dict]) -> list[tuple[float, float]]:
    """Visibility windows up to the last event, for shading the timeline."""
    times = [r.get(k) for r in rows for k in ("t_arrival_s", "t_tx_end_s")]
    horizon = max((t for t in times if t is not None and np.isfinite(t)), default=0.0) * 1.05
    # the link's own windows: passes of an orbit, start offsets and margin policies included
    return [(float(a), float(b)) for a, b in Windows(sc.channel).until(horizon)]


def _perceptual(lpips_weights, dists_weights) -> dict[str, object]:
    from codec.metrics import load_perceptual

    out = {}
    if lpips_weights is not None:
        out["lpips"] = load_perceptual("lpips", lpips_weights)
    if dists_weights is not None:
        out["dists"] = load_perceptual("dists", dists_weights)
    return out


def _expected_files(out: Path) -> list[str]:
    """What a replay writes into ``out``, checked up front: the fixed report files and the
    previews (numbered PNGs) already there."""
    previews = out / "previews"
    numbered = sorted(
        f"previews/{f.name}"
        for f in (previews.glob("*.png") if previews.is_dir() else ())
        if f.stem.isdigit()
    )
    return [*REPLAY_FILES, *numbered]


def _check_preview_count(n: int, max_previews: int | None, sc: Scenario) -> None:
    if max_previews is None or n <= max_previews:
        return
    raise PreviewLimitError(
        f"this replay would render up to {n:,} previews (one per packet: {n:,} packets of "
        f"{sc.packets.size_bytes} bytes), over the limit of {max_previews:,}; allow it with "
        f"--max-previews {n} (max_previews={n}), or send fewer, larger packets "
        "(--set packets.size_bytes=...)"
    )


def _write_folder(result: ReplayResult, folder: OutputFolder, stream: PreviewStream) -> None:
    """The report files, then the folder's manifest. After a full disk stopped the run, the
    summary (small) is still attempted, and the disk error is raised naming its file."""
    if stream.error is not None:
        result.summary["stopped_by"] = f"{stream.error.filename}: {stream.error.strerror}"
    try:
        write_outputs(result)
    except OSError:
        if stream.error is None:
            raise
    finally:
        # checked up front (claim); those this run wrote are now its own
        folder.written.update(name for name in REPLAY_FILES if folder.wrote(name))
    if stream.error is not None:
        raise stream.error
    folder.finish("interrupted" if result.interrupted else "complete")


def write_outputs(result: ReplayResult) -> None:
    """Everything of the report folder except the previews (written as they arrive)."""
    out = result.out_dir
    assert out is not None
    report.write_json(out / "summary.json", report.rounded(result.summary))
    report.write_csv(out / "packets.csv", result.rows)
    report.write_replay_report(result)  # figures, contact sheet, GIF, packets.pcap, report.html


# `satlink.replay(...)` runs replay(): the package exports the function under this module's name.
sys.modules[__name__].__class__ = satlink.CallableModule
