"""Figures of a replay: quality plots, timeline, contact sheet, GIF.

Every figure states its one time unit (chosen by the span it shows: :func:`time_axis`), names the
image, scenario and seed in its title (:func:`run_title`), and shows the packets that did not
make it: lost, corrupted and retransmitted transmissions are marked on both quality plots.

>>> time_axis([0.0, 474.0])
(60.0, 'min')
>>> run_title("photo.png", "leo-pass-budget", 3)
'photo.png · leo-pass-budget · seed 3'
>>> [e["outcome"] for e in transmission_events([
...     {"outcome": "delivered", "rx_verdict": "accepted", "t_tx_end_s": 1.0, "t_arrival_s": 1.2},
...     {"outcome": "lost", "rx_verdict": "", "t_tx_end_s": 2.0, "t_arrival_s": float("nan")}])]
['lost']
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from satlink.fileio import atomic_write, save_png

__all__ = [
    "MARKED_OUTCOMES",
    "MSSSIM_THRESHOLDS",
    "OUTCOME_COLOURS",
    "is_transmission",
    "messages_sent",
    "plot_quality",
    "plot_timeline",
    "quality_figure",
    "run_title",
    "time_axis",
    "timeline_figure",
    "transmission_events",
    "write_contact_sheet",
    "write_gif",
]

OUTCOME_COLOURS = {
    "delivered": "#2ca02c",
    "lost": "#d62728",
    "corrupted": "#ff7f0e",
    "dropped-queue": "#7f7f7f",
    "waited-for-visibility": "#9467bd",
    "retransmitted": "#1f77b4",
    "dropped-visibility": "#8c564b",
    "abandoned": "#e377c2",
}
# Transmissions that did not bring a new packet, marked on the quality plots.
MARKED_OUTCOMES = ("lost", "corrupted", "retransmitted", "abandoned")
MSSSIM_THRESHOLDS = (0.8, 0.9)  # as satlink.replay.MSSSIM_TARGETS
_MARKERS = {"lost": "x", "corrupted": "X", "retransmitted": "^", "abandoned": "v"}
VISIBILITY_COLOUR = "#ffe9a8"


def run_title(image_label: str, scenario: str, seed: int) -> str:
    """The line every figure of one run starts its title with."""
    return f"{image_label} · {scenario} · seed {seed}"


def time_axis(times_s: Iterable[float | None]) -> tuple[float, str]:
    """``(seconds per unit, unit)`` for an axis from 0 to the latest finite time: s up to
    3 min, min up to 3 h, then h."""
    span = max((t for t in times_s if t is not None and np.isfinite(t)), default=0.0)
    if span > 3 * 3600:
        return 3600.0, "h"
    if span > 3 * 60:
        return 60.0, "min"
    return 1.0, "s"


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def is_transmission(row: Mapping[str, Any]) -> bool:
    """Whether a trace row put a message on the wire (it has a transmission start and end;
    waits for visibility and drops do not), whatever its outcome."""
    return _finite(row.get("t_tx_start_s")) and _finite(row.get("t_tx_end_s"))


def messages_sent(rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Per row, the transmissions on the link so far, this one included (as the sweep's
    ``messages_sent``): the x of the packets axis."""
    out, n = [], 0
    for r in rows:
        n += is_transmission(r)
        out.append(n)
    return out


def transmission_events(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The transmissions that did not bring a new packet: lost, corrupted (by the channel or
    by the receiver's CRC) and retransmitted, each with ``messages_sent`` and ``t_s``."""
    events = []
    for r, sent in zip(rows, messages_sent(rows), strict=True):
        outcome = r.get("outcome", "")
        if r.get("rx_verdict") == "corrupted" and outcome == "delivered":
            outcome = "corrupted"
        if outcome not in MARKED_OUTCOMES:
            continue
        t = r.get("t_arrival_s")
        if not _finite(t):
            t = r.get("t_tx_end_s")
        events.append({"outcome": outcome, "messages_sent": sent, "t_s": t})
    return events


def _new_figure(figsize: tuple[float, float]):
    # A bare Figure, not pyplot: no global backend switch, so notebooks keep inline plots.
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.add_subplot()


def _save_figure(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write(path, buf.getvalue())


def _mark_events(ax, events: Sequence[tuple[float, str]]) -> list:
    """Dotted verticals and a marker at the foot of the axes for each event; legend handles."""
    from matplotlib.lines import Line2D

    handles = []
    trans = ax.get_xaxis_transform()  # x in data, y in axes fraction
    for outcome in MARKED_OUTCOMES:
        xs = [x for x, o in events if o == outcome and _finite(x)]
        if not xs:
            continue
        colour = OUTCOME_COLOURS[outcome]
        for x in xs:
            ax.axvline(x, color=colour, ls=":", lw=1, alpha=0.6, zorder=1)
        ax.plot(
            xs, [0.04] * len(xs), ls="none", marker=_MARKERS[outcome], ms=9, mew=2,
            color=colour, transform=trans, clip_on=False, zorder=5,
        )  # fmt: skip
        handles.append(
            Line2D([], [], ls="none", marker=_MARKERS[outcome], ms=8, mew=2, color=colour,
                   label=f"{outcome} ({len(xs)})")
        )  # fmt: skip
    return handles


def plot_quality(path: Path, *args: Any, **kwargs: Any) -> None:
    """Write :func:`quality_figure` as a PNG to ``path``."""
    _save_figure(quality_figure(*args, **kwargs), path)


def quality_figure(
    x: Sequence[float],
    psnr_db: Sequence[float],
    msssim: Sequence[float],
    xlabel: str,
    title: str,
    step: bool = False,
    events: Sequence[tuple[float, str]] = (),
    x_max: float | None = None,
):
    """PSNR (left axis) and MS-SSIM (right axis, dashed lines at the 0.8 and 0.9 thresholds)
    against packets or time; ``events`` are ``(x, outcome)`` of lost, corrupted and
    retransmitted transmissions, marked at the foot of the plot."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig, ax = _new_figure((7.5, 4.2))
    kw = {"where": "post"} if step else {}
    draw = ax.step if step else ax.plot
    psnr_plot = np.minimum(np.asarray(psnr_db, dtype=float), 100.0)  # lossless: inf dB
    draw(x, psnr_plot, color="C0", marker="o", ms=3, **kw)
    ax.set_xlabel(xlabel)
    if not step:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("PSNR (dB)", color="C0")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    (ax2.step if step else ax2.plot)(x, msssim, color="C3", marker="s", ms=3, **kw)
    for level in MSSSIM_THRESHOLDS:
        ax2.axhline(level, color="C3", ls="--", lw=0.8, alpha=0.7)
        ax2.annotate(
            f"MS-SSIM {level}", (0.005, level), xycoords=("axes fraction", "data"),
            fontsize=7, color="C3", va="bottom", ha="left",
        )  # fmt: skip
    ax2.set_ylim(0, 1.02)
    ax2.set_ylabel("MS-SSIM (unitless, 0–1)", color="C3")
    handles = [
        Line2D([], [], color="C0", marker="o", ms=3, label="PSNR (dB)"),
        Line2D([], [], color="C3", marker="s", ms=3, label="MS-SSIM"),
        *_mark_events(ax, events),
    ]
    if x_max is not None:
        ax.set_xlim(left=0, right=x_max)
    ax.set_title(title, fontsize=9)
    # on the upper axes, or the MS-SSIM line would run over it
    ax2.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.9)
    return fig


def plot_timeline(path: Path, *args: Any, **kwargs: Any) -> None:
    """Write :func:`timeline_figure` as a PNG to ``path``."""
    _save_figure(timeline_figure(*args, **kwargs), path)


def timeline_figure(
    rows: Sequence[Mapping[str, Any]],
    windows_s: Sequence[tuple[float, float]] = (),
    title: str = "",
):
    """Each transmission as a bar on the time axis, coloured by outcome; arrivals ticked, losses
    crossed, waits for visibility hatched, drops diamonds; visibility windows shaded in full
    (the axis spans every window that opened while the transfer ran)."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    times = [
        r.get(k) for r in rows for k in ("t_tx_end_s", "t_arrival_s", "t_enqueue_s")
        if _finite(r.get(k))
    ]  # fmt: skip
    horizon = max(times, default=1.0)
    shown = [(a, b) for a, b in windows_s if a <= horizon]
    right = max([horizon, *(b for _, b in shown)])
    scale, unit = time_axis([right])
    fig, ax = _new_figure((9.5, 4.2))
    for start, end in shown:
        ax.axvspan(start / scale, end / scale, color=VISIBILITY_COLOUR, alpha=0.7, lw=0)
    seen: set[str] = set()
    for r in rows:
        outcome = r.get("outcome", "")
        colour = OUTCOME_COLOURS.get(outcome, "black")
        seen.add(outcome)
        y = r.get("seq", 0)
        t0, t1, ta = r.get("t_tx_start_s"), r.get("t_tx_end_s"), r.get("t_arrival_s")
        if outcome == "waited-for-visibility" and _finite(t0):
            wait = r.get("wait_s") or 0.0
            ax.barh(y, wait / scale, left=(t0 - wait) / scale, height=0.7, color="none",
                    edgecolor=colour, hatch="///", lw=0.8)  # fmt: skip
            ax.plot([t0 / scale], [y], marker="|", color=colour, ms=12, mew=2)
            continue
        if outcome.startswith("dropped"):
            t = r.get("t_enqueue_s")
            if _finite(t):
                ax.plot([t / scale], [y], marker="D", color=colour, ms=7)
            continue
        if _finite(t0) and _finite(t1):
            ax.barh(y, max(t1 - t0, right * 0.002) / scale, left=t0 / scale, height=0.6,
                    color=colour)  # fmt: skip
        if _finite(ta):
            ax.plot([ta / scale], [y], marker="|", color=colour, ms=12, mew=2)
        elif _finite(t1):  # nothing arrived: lost (or a repeat's copy that vanished)
            ax.plot([t1 / scale], [y], marker="x", color=colour, ms=10, mew=2.5)
    handles = [Patch(color=OUTCOME_COLOURS.get(o, "black"), label=o) for o in sorted(seen)]
    if shown:
        handles.append(Patch(color=VISIBILITY_COLOUR, label="visibility window"))
    ax.legend(handles=handles, loc="upper left", fontsize=7, ncols=2, framealpha=0.85)
    ax.set_xlim(0, right * 1.02 / scale)
    ax.set_xlabel(f"time since the start ({unit})")
    ax.set_ylabel("message on the wire (seq)")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title or "Transmissions (bar: on air, tick: arrival, x: lost)", fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def _thumbnail(image: np.ndarray, max_side_px: int) -> Image.Image:
    im = Image.fromarray(image)
    scale = max_side_px / max(im.size)
    if scale < 1:
        im = im.resize(
            (max(1, round(im.width * scale)), max(1, round(im.height * scale))),
            Image.Resampling.BILINEAR,
        )
    return im


def _font(size_px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size_px)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _captioned(tile: Image.Image, text: str, width_px: int, font) -> Image.Image:
    """The tile with its caption on a white strip below it (never on the picture)."""
    lines = text.split("\n") if text else []
    line_px = font.getbbox("Ag")[3] + 3
    out = Image.new("RGB", (width_px, tile.height + 4 + line_px * len(lines)), (255, 255, 255))
    out.paste(tile.convert("RGB"), ((width_px - tile.width) // 2, 0))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((2, tile.height + 3 + i * line_px), line, fill=(0, 0, 0), font=font)
    return out


def write_gif(
    path: Path,
    frames: Sequence[np.ndarray],
    labels: Sequence[str] = (),
    max_side_px: int = 384,
    frame_ms: int = 400,
) -> None:
    """Animated GIF of the previews, each captioned below the picture; the last frame holds
    three times longer."""
    if not frames:
        return
    font = _font(12)
    ims = []
    for i, frame in enumerate(frames):
        im = _thumbnail(frame, max_side_px)
        im = _captioned(im, labels[i] if i < len(labels) else "", im.width, font)
        # Fast octree palettes: median cut (PIL's default) costs ~40 ms a frame at this size.
        ims.append(im.quantize(colors=255, method=Image.Quantize.FASTOCTREE))
    size = (max(i.width for i in ims), max(i.height for i in ims))
    ims = [i if i.size == size else i.crop((0, 0, *size)) for i in ims]
    durations = [frame_ms] * (len(ims) - 1) + [frame_ms * 3]
    buf = io.BytesIO()
    ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:], duration=durations, loop=0)
    atomic_write(path, buf.getvalue())


def write_contact_sheet(
    path: Path,
    frames: Sequence[np.ndarray],
    labels: Sequence[str],
    columns: int = 6,
    tile_px: int = 192,
    title: str = "",
) -> None:
    """All previews on one sheet, left to right, each with its caption (lines separated by
    ``\\n``) below the picture, and an optional title line on top."""
    if not frames:
        return
    font = _font(11)
    tiles = [_thumbnail(f, tile_px) for f in frames]
    tw = max(t.width for t in tiles)
    tiles = [
        _captioned(t, labels[i] if i < len(labels) else "", tw, font) for i, t in enumerate(tiles)
    ]
    th = max(t.height for t in tiles)
    cols = min(columns, len(tiles))
    rows = -(-len(tiles) // cols)
    top = 22 if title else 4
    gap = 8
    sheet = Image.new(
        "RGB", (cols * (tw + gap) + gap, top + rows * (th + gap) + 4), (255, 255, 255)
    )
    if title:
        ImageDraw.Draw(sheet).text((gap, 4), title, fill=(0, 0, 0), font=_font(13))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, (gap + (i % cols) * (tw + gap), top + (i // cols) * (th + gap)))
    # The previews' fast PNG writer: Pillow's took 204 ms for a 30-preview sheet, this 32 ms,
    # for a file 17 % larger (a replay writes one sheet).
    save_png(path, np.asarray(sheet))
