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

import functools
import math
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import satlink
from satlink import report
from satlink.channel import Trace
from satlink.packets import (
    TransmitPlan,
    byte_capacity,
    packetize,
    packetize_bytes,
    parse_packet,
    plan_transmission,
)
from satlink.receiver import Arrival, DecodeCache, Preview, Receiver, crc_check
from satlink.scenario import DEFAULT_SCENARIO, Scenario, load_scenario

if TYPE_CHECKING:
    # Types only: the codec pulls in torch (seconds); the steps that need it import it inside.
    from codec import Codec, ProgressiveCode

__all__ = [
    "MSSSIM_TARGETS",
    "ON_AIR_OUTCOMES",
    "PAYLOADS",
    "Payload",
    "ReplayResult",
    "Transmission",
    "default_image",
    "encode_payload",
    "replay",
    "summarise",
    "transmit",
    "write_outputs",
]

MSSSIM_TARGETS = (0.8, 0.9)  # the summary's time_to_msssim_<target>_s figures
# Trace outcomes that put a message on the wire (drops and visibility waits do not).
ON_AIR_OUTCOMES = ("delivered", "lost", "corrupted", "retransmitted")
PAYLOADS: tuple[str, ...] = ("rvq", "avif", "jxl", "jpeg")


def default_image() -> np.ndarray:
    """The built-in source image: scikit-image's astronaut (512×512, public domain, NASA)."""
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
) -> Payload:
    """Packets for the RVQ code or for a classical file (``avif``, ``jxl``, ``jpeg``).

    A classical file is the best that fits ``budget_packets`` packets (default: as many as the
    RVQ code of this image takes on this packet layout); when none fits, ``plan`` is None.
    ``effort`` > 0 refines the RVQ encoding for this picture (``codec.Codec.encode``).
    """
    size = scenario.packets.size_bytes
    if payload == "rvq":
        code = codec.encode(image, effort=effort)
        packets = packetize(
            code,
            size,
            message_id=message_id,
            order=scenario.packets.order,
            interleave=scenario.packets.interleave,
        )
        reliable = [parse_packet(p).stage == 0 for p in packets]
        info = {"payload": "rvq", "packets": len(packets), "effort": effort}
        return Payload(plan_transmission(packets, scenario, reliable), info, code)
    if payload not in PAYLOADS:
        raise ValueError(f"payload {payload!r}: choose from {', '.join(PAYLOADS)}")
    from codec.classical import CLASSICAL_CODECS, fit_classical
    from satlink.packets import CONTENT_TYPES

    if budget_packets is None:
        budget_packets = len(
            packetize(
                codec.encode(image, effort=effort),
                size,
                order=scenario.packets.order,
                message_id=0,
            )
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


@dataclass
class Transmission:
    """One run of the link: what it carried and what the receiver made of every delivery."""

    plan: TransmitPlan
    receiver: Receiver
    arrivals: list[Arrival]
    trace: Trace | None  # None when interrupted before the link finished
    interrupted: bool = False

    @property
    def previews(self) -> list[Preview]:
        return self.receiver.previews

    @functools.cached_property
    def trace_rows(self) -> list[dict[str, Any]]:
        """The channel's events, one row each (after Ctrl-C: what arrived)."""
        if self.trace is not None:
            return list(self.trace.rows())
        # After Ctrl-C the trace is incomplete; what arrived is still worth a valid CSV.
        return [
            {"seq": a.wire_seq, "t_arrival_s": a.t_arrival_s, "outcome": "delivered"}
            for a in self.arrivals
        ]

    def rows(self) -> list[dict[str, Any]]:
        """``packets.csv``: the trace, one row per event, joined with the receiver's verdicts
        and the scores of the preview each arrival made."""
        by_arrival: dict[tuple[int, float], list[Arrival]] = {}
        for a in self.arrivals:
            by_arrival.setdefault((a.wire_seq, a.t_arrival_s), []).append(a)
        rows = []
        for r in self.trace_rows:
            row = dict(r)
            row["packet_seq"] = self.plan.packet_of_message[r["seq"]]
            hits = by_arrival.get((r["seq"], r["t_arrival_s"]))
            a = hits.pop(0) if hits else None
            row["rx_verdict"] = a.verdict if a else ""
            row["rx_reason"] = a.reason if a else ""
            p = a.preview if a else None
            row["preview"] = p.number if p else ""
            row["indices_received"] = p.indices_received if p else ""
            row["stages_complete"] = p.stages_complete if p else ""
            for k, v in p.scores.items() if p else ():
                row[k] = v
            rows.append(row)
        return rows


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
    on_arrival: Callable[[Arrival], None] | None = None,
    interruptible: bool = False,
) -> Transmission:
    """Run the scenario's link on ``plan`` and hand every delivery to a receiver, in arrival
    order; the receiver scores its previews against ``reference``.

    ``seed`` decides the link's randomness (``SeedSequence(seed)``). With ``interruptible``, a
    Ctrl-C ends the run early and the result says so (``interrupted``) and holds what arrived;
    otherwise it propagates.
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
            tx.arrivals.append(arrival)
            if on_arrival is not None:
                on_arrival(arrival)
    except KeyboardInterrupt:
        if not interruptible:
            raise
        tx.interrupted = True
    else:
        tx.trace = run.trace
    return tx


@dataclass
class ReplayResult:
    scenario: Scenario
    seed: int
    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    previews: list[Preview]
    trace: Trace | None
    interrupted: bool = False
    out_dir: Path | None = None
    windows_s: list[tuple[float, float]] = field(default_factory=list)

    def summary_table(self) -> str:
        s = self.summary

        def fmt_t(v):
            return "never" if v is None else f"{v:,.1f} s"

        def fmt(v, spec):
            return "-" if v is None else format(v, spec)

        c = s["counts"]
        lines = [
            f"scenario              {s['scenario']['scenario']['name']}  (seed {s['seed']})",
            f"image                 {s['image']['label']}  {s['image']['width_px']}×"
            f"{s['image']['height_px']} px",
            f"packets               {c['packets']} × {s['packet_size_bytes']} B"
            f"  ({c['wire_messages']} messages on the wire)",
            f"sent / delivered      {c['transmissions']} / {c['delivered']}",
            f"lost / corrupted      {c['lost']} / {c['corrupted']}",
            f"retransmitted         {c['retransmitted']}   dropped {c['dropped']}",
            f"previews              {len(self.previews)}",
            f"first preview         {fmt_t(s['time_to_first_preview_s'])}",
            f"MS-SSIM ≥ 0.9         {fmt_t(s['time_to_msssim_0.9_s'])}",
            f"full quality          {fmt_t(s['time_to_full_quality_s'])}",
            f"final PSNR            {fmt(s['final_psnr_db'], '.2f')} dB",
            f"final MS-SSIM         {fmt(s['final_ms_ssim'], '.4f')}",
        ]
        if self.interrupted:
            lines.append("INTERRUPTED: files hold what arrived before Ctrl-C")
        return "\n".join(lines)


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
    summary = {
        "scenario": scenario.to_dict(),
        "seed": seed,
        "versions": _versions(codec),
        "image": {
            "label": image_label,
            "height_px": int(image.shape[0]),
            "width_px": int(image.shape[1]),
        },
        "payload": dict(payload_info or {}),
        "packet_size_bytes": scenario.packets.size_bytes,
        "time_to_first_preview_s": previews[0].t_arrival_s if previews else None,
        "time_to_full_quality_s": full,
        "final_psnr_db": final.get("psnr_db"),
        "final_ms_ssim": final.get("ms_ssim"),
        "final_stages_complete": last.stages_complete if last else 0,
        "counts": {
            "packets": plan.packet_count,
            "wire_messages": len(plan.messages),
            # Wait and drop rows are events, not transmissions.
            "transmissions": sum(o in ON_AIR_OUTCOMES for o in outcomes),
            "delivered": outcomes.count("delivered"),
            "lost": outcomes.count("lost"),
            # The receiver's CRC, not the channel, decides what is corrupt.
            "corrupted": verdicts.count("corrupted"),
            "retransmitted": outcomes.count("retransmitted"),
            "dropped": outcomes.count("dropped-queue") + outcomes.count("dropped-visibility"),
            "waited_for_visibility": outcomes.count("waited-for-visibility"),
            "accepted": verdicts.count("accepted"),
            "duplicates": verdicts.count("duplicate"),
            "rejected": verdicts.count("rejected"),
        },
        "previews": len(previews),
        "interrupted": transmission.interrupted,
    }
    for target in MSSSIM_TARGETS:
        summary[f"time_to_msssim_{target}_s"] = _first_time(
            previews, lambda p, t=target: p.scores.get("ms_ssim", -1) >= t
        )
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
    keep_images: bool = True,
    message_id: int = 1,
    effort: int = 0,
) -> ReplayResult:
    """Replay one transfer and, with ``out_dir``, write the full report folder.

    ``scenario`` is a preset name, a TOML path or a :class:`Scenario`; ``overrides`` are
    ``key=value`` strings as on the command line. ``payload`` is ``"rvq"`` (the progressive
    code) or a classical file (``"avif"``, ``"jxl"``, ``"jpeg"``) of at most ``budget_packets``
    (default: as many as the RVQ code takes). ``effort`` > 0 refines the RVQ encoding of this
    picture by that many gradient steps (slower to encode, same decoder and packets).
    """
    from codec import default_codec, load_image

    extra = list(overrides)
    if order is not None:
        extra.append(f'packets.order="{order}"')
    if interleave is not None:
        extra.append(f"packets.interleave={'true' if interleave else 'false'}")
    if isinstance(scenario, Scenario):
        sc = scenario.with_overrides(extra) if extra else scenario
    else:
        sc = load_scenario(scenario, overrides=extra)
    if image is None:
        source, label = default_image(), "skimage astronaut (built-in)"
    else:
        source = load_image(image)
        label = str(image) if isinstance(image, str | Path) else "array"
    codec = codec or default_codec()
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        _prepare_out(out)

    encoded = encode_payload(
        source,
        payload,
        sc,
        budget_packets=budget_packets,
        message_id=message_id,
        codec=codec,
        effort=effort,
    )
    if encoded.plan is None:
        capacity = encoded.info["budget_packets"] * byte_capacity(sc.packets.size_bytes)
        raise ValueError(
            f"no {payload} file of {source.shape[1]}×{source.shape[0]} px fits "
            f"{encoded.info['budget_packets']} packets ({capacity} payload bytes)"
        )
    plan = encoded.plan
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=plan.packet_count, unit="pkt", desc=f"replay {sc.name}", dynamic_ncols=True
        )

    def on_arrival(arrival: Arrival) -> None:
        if arrival.preview is not None and out is not None:
            report.save_png(
                out / "previews" / f"{arrival.preview.number:03d}.png", arrival.preview.image
            )
        if bar is not None and arrival.verdict == "accepted":
            bar.update(1)
            if arrival.preview is not None and arrival.preview.scores:
                bar.set_postfix(
                    t=f"{arrival.t_arrival_s:,.0f}s",
                    msssim=f"{arrival.preview.scores['ms_ssim']:.3f}",
                )

    try:
        tx = transmit(
            sc,
            plan,
            seed=seed,
            codec=codec,
            reference=source,
            cache=cache,
            keep_images=keep_images or out is not None,
            perceptual=_perceptual(lpips_weights, dists_weights),
            on_arrival=on_arrival,
            interruptible=True,
        )
    finally:
        if bar is not None:
            bar.close()
    summary = summarise(
        sc, tx, seed=seed, codec=codec, image=source, image_label=label, payload_info=encoded.info
    )
    rows = tx.rows()
    windows = _visibility_windows(sc, rows)
    result = ReplayResult(
        sc, seed, summary, rows, tx.previews, tx.trace, tx.interrupted, out, windows
    )
    if out is not None:
        write_outputs(result)
    return result


def _visibility_windows(sc: Scenario, rows: Sequence[dict]) -> list[tuple[float, float]]:
    """Visibility windows up to the last event, for shading the timeline."""
    times = [r.get(k) for r in rows for k in ("t_arrival_s", "t_tx_end_s")]
    horizon = max((t for t in times if t is not None and np.isfinite(t)), default=0.0) * 1.05
    v = sc.channel.visibility
    if v.mode == "windows":
        return [(float(a), float(b)) for a, b in v.windows_s if a <= horizon]
    if v.mode == "periodic":
        duration = sc.channel.window_duration_s() or 0.0
        k_max = int((horizon - v.first_start_s) // v.period_s) + 1
        return [
            (v.first_start_s + k * v.period_s, v.first_start_s + k * v.period_s + duration)
            for k in range(max(k_max, 0) + 1)
        ]
    return []


def _perceptual(lpips_weights, dists_weights) -> dict[str, object]:
    from codec.metrics import load_perceptual

    out = {}
    if lpips_weights is not None:
        out["lpips"] = load_perceptual("lpips", lpips_weights)
    if dists_weights is not None:
        out["dists"] = load_perceptual("dists", dists_weights)
    return out


def _prepare_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OSError(f"cannot write to output folder {out}: {exc.strerror or exc}") from None
    previews = out / "previews"
    if previews.is_dir():  # a re-run into the same folder must not mix old frames in
        for old in previews.glob("*.png"):
            old.unlink()


def write_outputs(result: ReplayResult) -> None:
    """Everything of the report folder except the previews (written as they arrive)."""
    out = result.out_dir
    assert out is not None
    report.write_json(out / "summary.json", result.summary)
    report.write_csv(out / "packets.csv", result.rows)
    frames = [p.image for p in result.previews if p.image is not None]
    labels = [_label(p) for p in result.previews]
    report.write_contact_sheet(out / "contact_sheet.png", frames, labels)
    report.write_gif(out / "progressive.gif", frames, labels)
    name = result.scenario.name
    if result.previews:
        n = [p.number for p in result.previews]
        ps = [p.scores.get("psnr_db", math.nan) for p in result.previews]
        ms = [p.scores.get("ms_ssim", math.nan) for p in result.previews]
        report.plot_quality(
            out / "quality_vs_packets.png",
            n,
            ps,
            ms,
            "packets accepted (count)",
            f"{name}: quality vs packets received",
        )
        scale, unit = report.time_axis(p.t_arrival_s for p in result.previews)
        t = [p.t_arrival_s / scale for p in result.previews]
        report.plot_quality(
            out / "quality_vs_time.png",
            t,
            ps,
            ms,
            f"arrival time ({unit})",
            f"{name}: quality vs time",
            step=True,
        )
    report.plot_timeline(
        out / "timeline.png", result.rows, result.windows_s, f"{name}: transmissions by outcome"
    )


def _label(p: Preview) -> str:
    if not p.scores:
        return f"#{p.number}"
    return f"#{p.number} {p.scores['psnr_db']:.1f}dB {p.scores['ms_ssim']:.3f}"


# `satlink.replay(...)` runs replay(): the package exports the function under this module's name.
sys.modules[__name__].__class__ = satlink.CallableModule
