"""The files of one replay folder, from a :class:`satlink.result.ReplayResult`: quality plots,
timeline, contact sheet, GIF, ``packets.pcap`` and ``report.html``, and the previews themselves
as they arrive (:class:`PreviewStream`).

>>> from satlink.replay import replay
>>> result = replay("bds3-rsmc-geo", seed=0, out_dir="replay-out")   # doctest: +SKIP
>>> write_replay_report(result)   # what replay() already did     # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from satlink.fileio import save_png
from satlink.outdir import OutputFolder
from satlink.receiver import Arrival, Preview
from satlink.report.figures import (
    MSSSIM_THRESHOLDS,
    OUTCOME_COLOURS,
    messages_sent,
    plot_quality,
    plot_timeline,
    run_title,
    time_axis,
    transmission_events,
    write_contact_sheet,
    write_gif,
)
from satlink.report.files import rounded
from satlink.report.html import figures_html, image_data_uri, table_html, write_page
from satlink.report.pcap import write_pcap
from satlink.result import ReplayResult

__all__ = [
    "MAX_FRAMES",
    "PreviewStream",
    "coverage_maps",
    "frame_of",
    "preview_caption",
    "preview_images",
    "write_replay_figures",
    "write_replay_html",
    "write_replay_pcap",
    "write_replay_report",
]

FIGURES = ("quality_vs_packets.png", "quality_vs_time.png", "timeline.png", "contact_sheet.png")
MAX_COVERAGE_BYTES = 8 << 20  # coverage maps in report.html: beyond this, no overlay
# Pictures in the contact sheet, GIF and report.html: bounded, whatever the number of previews
# (all previews stay in previews/ and in the plots); none is shown larger than this.
MAX_FRAMES = 100
FRAME_MAX_SIDE_PX = 640
# The page's script ships as package data (satlink/report/replay.js) and is inlined.
REPLAY_SCRIPT = resources.files("satlink.report").joinpath("replay.js").read_text("utf-8")


def _short_label(label: str) -> str:
    return Path(label).name if ("/" in label or "\\" in label) else label


def _title(result: ReplayResult) -> str:
    s = result.summary
    return run_title(_short_label(str(s.get("image", ""))), result.scenario.name, result.seed)


def frame_of(image: np.ndarray) -> np.ndarray:
    """``image`` ``[H, W, 3]`` shrunk to at most :data:`FRAME_MAX_SIDE_PX` a side (itself if
    it is no larger): the picture the contact sheet, the GIF and ``report.html`` show. Always
    a new array, so keeping it does not keep the decoded picture alive."""
    if max(image.shape[:2]) <= FRAME_MAX_SIDE_PX:
        return image.copy()
    im = Image.fromarray(image)
    im.thumbnail((FRAME_MAX_SIDE_PX, FRAME_MAX_SIDE_PX), Image.Resampling.BILINEAR)
    return np.asarray(im)


def preview_images(result: ReplayResult) -> list[np.ndarray | None]:
    """Each preview's pixels, at most :data:`FRAME_MAX_SIDE_PX` a side: the preview's kept
    ``frame``, else its pixels in memory, else read back from ``previews/NNN.png``. Beyond
    :data:`MAX_FRAMES` previews only that many, evenly spaced (first and last included), get
    pixels and the rest None (not shown), so the memory the figures take does not grow with
    the number of previews."""
    n = len(result.previews)
    chosen = (
        set(range(n))
        if n <= MAX_FRAMES
        else {round(i * (n - 1) / (MAX_FRAMES - 1)) for i in range(MAX_FRAMES)}
    )
    out: list[np.ndarray | None] = []
    for i, p in enumerate(result.previews):
        if i not in chosen:
            out.append(None)
            continue
        if p.frame is not None:
            out.append(p.frame)
            continue
        image = p.image
        if image is None and result.out_dir is not None:
            path = result.out_dir / "previews" / f"{p.number:03d}.png"
            if path.is_file():
                with Image.open(path) as im:
                    image = np.asarray(im.convert("RGB"))
        out.append(None if image is None else frame_of(image))
    return out


def _trigger_rows(rows: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    """Preview number -> index of the packets.csv row whose copy made it."""
    return {r["preview"]: i for i, r in enumerate(rows) if isinstance(r.get("preview"), int)}


def preview_caption(p: Preview, unit_s: float, unit: str) -> str:
    """Two caption lines: number, packet and time; scores."""
    line1 = f"#{p.number} · packet {p.seq} · {p.t_arrival_s / unit_s:,.1f} {unit}"
    if not p.scores:
        return line1
    return f"{line1}\nPSNR {p.scores['psnr_db']:.1f} dB · MS-SSIM {p.scores['ms_ssim']:.3f}"


def _time_unit(result: ReplayResult) -> tuple[float, str, float]:
    times = [r.get(k) for r in result.rows for k in ("t_arrival_s", "t_tx_end_s")]
    finite = [t for t in times if isinstance(t, int | float) and math.isfinite(t)]
    t_max = max(finite, default=1.0) * 1.03
    unit_s, unit = time_axis([t_max])
    return unit_s, unit, t_max


def write_replay_figures(result: ReplayResult, frames: Sequence[np.ndarray | None]) -> None:
    """Quality against messages sent and against time (thresholds, lost / corrupted /
    retransmitted marked), the timeline, the contact sheet and the GIF."""
    out = result.out_dir
    assert out is not None
    title = _title(result)
    unit_s, unit, t_max = _time_unit(result)
    shown = [(p, f) for p, f in zip(result.previews, frames, strict=True) if f is not None]
    labels = [preview_caption(p, unit_s, unit) for p, _ in shown]
    pictures = [f for _, f in shown]
    write_contact_sheet(out / "contact_sheet.png", pictures, labels, title=title)
    write_gif(out / "progressive.gif", pictures, labels)
    events = transmission_events(result.rows)
    sent = messages_sent(result.rows)
    trigger = _trigger_rows(result.rows)
    if result.previews:
        ps = [p.scores.get("psnr_db", math.nan) for p in result.previews]
        ms = [p.scores.get("ms_ssim", math.nan) for p in result.previews]
        x = [sent[trigger[p.number]] if p.number in trigger else p.number for p in result.previews]
        plot_quality(
            out / "quality_vs_packets.png", x, ps, ms,
            "messages sent on the link (count, repeats included)",
            f"{title}\nquality after each message sent",
            events=[(e["messages_sent"], e["outcome"]) for e in events],
            x_max=(sent[-1] if sent else 1) + 0.5,
        )  # fmt: skip
        plot_quality(
            out / "quality_vs_time.png",
            [0.0] + [p.t_arrival_s / unit_s for p in result.previews] + [t_max / unit_s],
            [math.nan, *ps, ps[-1]], [math.nan, *ms, ms[-1]],
            f"time since the start ({unit})", f"{title}\nquality against time",
            step=True,
            events=[(e["t_s"] / unit_s, e["outcome"]) for e in events if e["t_s"] is not None],
            x_max=t_max / unit_s,
        )  # fmt: skip
    plot_timeline(
        out / "timeline.png", result.rows, result.windows_s, f"{title}\ntransmissions by outcome"
    )


def write_replay_pcap(result: ReplayResult) -> int:
    """``packets.pcap`` (see :mod:`satlink.report.pcap`); 0 frames when the transmitted bytes
    are not known (a result built without its transmission)."""
    tx = result.transmission
    if tx is None or result.out_dir is None:
        return 0
    return write_pcap(
        result.out_dir / "packets.pcap",
        result.rows,
        tx.plan.messages,
        tx.received_bytes,
        fragments=result.scenario.packets.fragment_bytes is not None,
    )


def coverage_maps(result: ReplayResult) -> tuple[dict[str, int], list[str]] | None:
    """Per preview, how many stages each latent position had received (uint8, row-major,
    base64) with ``{"h", "w", "stages"}``; None for file payloads or without the plan."""
    from satlink.packets import Defragmenter, IndexPacket, PacketError, parse_packet

    tx = result.transmission
    if tx is None or not result.previews:
        return None
    packets: dict[int, IndexPacket] = {}
    defrag = Defragmenter() if result.scenario.packets.fragment_bytes is not None else None
    for message in tx.plan.messages:
        try:
            data = defrag.add(message) if defrag is not None else message
            packet = parse_packet(data) if data is not None else None
        except PacketError:
            continue
        if packet is not None:
            if not isinstance(packet, IndexPacket):
                return None
            packets[packet.seq] = packet
    if not packets:
        return None
    first = next(iter(packets.values()))
    h, w = first.latent_shape
    if h * w * len(result.previews) > MAX_COVERAGE_BYTES:
        return None
    count = np.zeros(h * w, np.uint8)
    maps = []
    for p in result.previews:
        packet = packets.get(p.seq)
        if packet is not None:
            # add.at: a packet of a small picture may carry one position in several stages
            np.add.at(count, packet.positions, 1)
        maps.append(base64.b64encode(count.tobytes()).decode("ascii"))
    return {"h": h, "w": w, "stages": first.num_stages}, maps


def _budget_html(result: ReplayResult) -> str:
    try:
        budget = result.scenario.link_budget()
    except Exception as exc:  # a scenario without [budget]: say so, the report goes on
        return f'<p class="muted">No link budget: {html.escape(str(exc))}</p>'
    steps = budget if isinstance(budget, list) else [budget]
    if len(steps) > 16:
        steps = [steps[round(i * (len(steps) - 1) / 15)] for i in range(16)]
    rows = [rounded({k: v for k, v in s.items() if not isinstance(v, dict)}) for s in steps]
    note = "over the pass, one row per time step" if isinstance(budget, list) else ""
    return f'<p class="muted">{note}</p><div class="wrap">{table_html(rows)}</div>'


def _facts_html(summary: Mapping[str, Any], unit_s: float, unit: str) -> str:
    c = summary.get("counts", {})

    def t(key: str) -> str:
        v = summary.get(key)
        return "never" if v is None else f"{v / unit_s:,.2f} {unit} ({v:,.1f} s)"

    def num(key: str, spec: str) -> str:
        v = summary.get(key)
        return "–" if v is None else format(v, spec)

    payload = summary.get("payload", {})
    facts = [
        ("scenario", f"{summary.get('scenario')} {' '.join(summary.get('overrides', []))}"),
        ("seed", summary.get("seed")),
        ("image", f"{summary.get('image')} ({summary.get('image_width_px')}×"
                  f"{summary.get('image_height_px')} px)"),
        ("payload", ", ".join(f"{k} {v}" for k, v in payload.items())),
        ("packets", f"{c.get('packets')} × {summary.get('packet_size_bytes')} B "
                    f"({c.get('wire_messages')} messages on the wire)"),
        ("sent / delivered", f"{c.get('transmissions')} / {c.get('delivered')}"),
        ("lost / corrupted / retransmitted / dropped",
         f"{c.get('lost')} / {c.get('corrupted')} / {c.get('retransmitted')} / {c.get('dropped')}"),
        ("first preview", t("time_to_first_preview_s")),
        ("MS-SSIM ≥ 0.8", t("time_to_msssim_0.8_s")),
        ("MS-SSIM ≥ 0.9", t("time_to_msssim_0.9_s")),
        ("full quality", t("time_to_full_quality_s")),
        ("final PSNR", f"{num('final_psnr_db', '.2f')} dB"),
        ("final MS-SSIM", num("final_ms_ssim", ".4f")),
    ]  # fmt: skip
    if summary.get("interrupted"):
        facts.append(("INTERRUPTED", "the files hold what arrived before Ctrl-C"))
    body = "".join(f"<tr><th class='l'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in facts)  # fmt: skip
    return f'<table class="facts">{body}</table>'


def write_replay_html(result: ReplayResult, frames: Sequence[np.ndarray | None]) -> None:
    """``report.html``: summary, preview slider with overlay, chart, figures, budget, trace."""
    out = result.out_dir
    assert out is not None
    unit_s, unit, t_max = _time_unit(result)
    trigger = _trigger_rows(result.rows)
    cov = coverage_maps(result)
    previews = []
    for i, (p, frame) in enumerate(zip(result.previews, frames, strict=True)):
        if frame is None:
            continue
        row = result.rows[trigger[p.number]] if p.number in trigger else {}
        previews.append({
            "number": p.number, "seq": p.seq, "t_arrival_s": p.t_arrival_s,
            "psnr_db": p.scores.get("psnr_db"), "ms_ssim": p.scores.get("ms_ssim"),
            "indices_received": p.indices_received, "indices_total": p.indices_total,
            "stages_complete": p.stages_complete, "src": image_data_uri(frame),
            "coverage": cov[1][i] if cov else None,
            "trigger": {"event": trigger.get(p.number), "wire_seq": row.get("seq"),
                        "attempt": row.get("attempt"), "outcome": row.get("outcome"),
                        "rx_verdict": row.get("rx_verdict")},
        })  # fmt: skip
    first_ms = result.previews[0].scores.get("ms_ssim") if result.previews else None
    data = {
        "previews": previews,
        "latent": cov[0] if cov else None,
        "events": transmission_events(result.rows),
        "thresholds": list(MSSSIM_THRESHOLDS),
        "outcome_colours": OUTCOME_COLOURS,
        "time_unit": unit,
        "time_unit_s": unit_s,
        "t_max_s": t_max,
        "floor_ms_ssim": 0.0 if first_ms is None else min(first_ms, 0.0),
    }
    title = _title(result)
    figs = figures_html(out, FIGURES)
    columns = list(dict.fromkeys(k for r in result.rows for k in r))
    row_ids = [f"row-{i}" for i in range(len(result.rows))]
    body = f"""
<h1>Replay: {html.escape(title)}</h1>
<p class="muted">satlink {html.escape(str(result.summary.get("versions", {}).get("satlink", "")))}
· one self-contained page: previews, figures and trace are inside it (no network).
Files next to it: summary.json, packets.csv, packets.pcap, previews/ (lossless PNG).</p>
{_facts_html(result.summary, unit_s, unit)}
<h2>Previews</h2>
<div class="viewer"><div>
<div class="stage"><img id="preview" alt="preview" data-number="0">
<canvas id="overlay"></canvas></div>
<p><input id="slider" type="range" min="0" max="0" value="0" step="1"
aria-label="preview after packet"></p>
<label><input id="show-missing" type="checkbox" checked> mark missing regions
(red: no index yet; amber: later stages missing)</label>
</div><div style="flex:1;min-width:300px"><p id="caption"></p>
<svg id="chart" width="100%" role="img" aria-label="MS-SSIM against time"></svg></div></div>
<h2>Figures</h2>{figs}
<h2>Link budget</h2>{_budget_html(result)}
<h2>Trace (packets.csv; columns in docs/OUTPUTS.md)</h2>
<div class="wrap">{table_html(result.rows, columns, row_ids)}</div>
"""
    write_page(out / "report.html", f"satlink replay: {title}", body, data, REPLAY_SCRIPT)


def write_replay_report(result: ReplayResult) -> None:
    """Figures, contact sheet, GIF, ``packets.pcap`` and ``report.html`` of a replay folder."""
    frames = preview_images(result)
    write_replay_figures(result, frames)
    write_replay_pcap(result)
    write_replay_html(result, frames)


class PreviewStream:
    """Writes each preview to ``previews/NNN.png`` as it arrives and lets go of its pixels.

    After the PNG is written the preview keeps only its path (``Preview.image`` reads the PNG
    back on access), so a replay's memory does not grow with the number of previews, unless
    ``keep_images`` asks to keep every image in memory as well. Up to the report's
    ``MAX_FRAMES`` previews also keep a small ``frame`` for the report, which then need not
    read them back; past that many none does, so memory stays bounded. A failed write (a full
    disk) is kept in ``error`` and ends the stream (the call returns False).
    """

    def __init__(self, folder: OutputFolder, keep_images: bool = False) -> None:
        self.folder = folder
        self.keep_images = keep_images
        self.error: OSError | None = None
        self._framed: list[Preview] | None = []  # previews holding a frame; None: keep no more

    @staticmethod
    def name(number: int) -> str:
        return f"previews/{number:03d}.png"

    def __call__(self, preview: Preview) -> bool:
        path = self.folder.file(self.name(preview.number))
        try:
            save_png(path, preview.image)
        except OSError as exc:
            self.error = exc
            return False
        preview.path = path
        self._keep_frame(preview)
        if not self.keep_images:
            preview.image = None  # from now on read back from the PNG
        return True

    def _keep_frame(self, preview: Preview) -> None:
        if self._framed is None:
            return
        if len(self._framed) == MAX_FRAMES:  # the report will pick frames among more: read back
            for p in self._framed:
                p.frame = None
            self._framed = None
            return
        preview.frame = frame_of(preview.image)
        self._framed.append(preview)

    def settle(self, previews: list[Preview], arrivals: Iterable[Arrival]) -> None:
        """Keep only the previews whose PNG is on disk (a Ctrl-C or a full disk can strike
        between rendering a preview and writing it): the summary never counts a picture that
        is not there. ``previews`` is changed in place; arrivals lose their dropped preview."""
        kept = []
        for p in previews:
            if p.path is None:
                rel = self.name(p.number)
                # written, but interrupted before it was noted: an atomic rename, so whole
                if rel in self.folder.written and self.folder.wrote(rel):
                    p.path = self.folder.root / rel
                else:
                    continue
            kept.append(p)
        ids = {id(p) for p in kept}
        previews[:] = kept
        for a in arrivals:
            if a.preview is not None and id(a.preview) not in ids:
                a.preview = None
