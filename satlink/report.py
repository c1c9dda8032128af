"""Files and figures of a replay: summary, per-packet CSV, previews, plots, GIF, contact sheet.

Every file is written to a temporary name and renamed into place (:func:`atomic_write`), so an
interrupted run never leaves a half-written file behind.

>>> write_csv(Path("out/packets.csv"), [{"seq": 0, "outcome": "delivered"}])   # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "OUTCOME_COLOURS",
    "atomic_write",
    "plot_quality",
    "plot_timeline",
    "save_png",
    "time_axis",
    "write_contact_sheet",
    "write_csv",
    "write_gif",
    "write_json",
]

OUTCOME_COLOURS = {
    "delivered": "#2ca02c",
    "lost": "#d62728",
    "corrupted": "#ff7f0e",
    "dropped-queue": "#7f7f7f",
    "waited-for-visibility": "#9467bd",
    "retransmitted": "#1f77b4",
    "dropped-visibility": "#8c564b",
}


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all at once: readers see the old file or the new, never half.

    The bytes go to a temporary file in the same folder (a rename is atomic only within one
    file system), named uniquely per call so that two writers of one path (sweep workers, two
    threads) never share a temporary file; the last rename wins. On failure the temporary file
    is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:  # x: never reuse a file someone else is writing
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: dict) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def write_csv(path: Path, rows: Sequence[dict]) -> None:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    atomic_write(path, buf.getvalue().encode())


def _csv_value(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def save_png(path: Path, image: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    atomic_write(path, buf.getvalue())


def _thumbnail(image: np.ndarray, max_side_px: int) -> Image.Image:
    im = Image.fromarray(image)
    scale = max_side_px / max(im.size)
    if scale < 1:
        im = im.resize(
            (max(1, round(im.width * scale)), max(1, round(im.height * scale))),
            Image.Resampling.BILINEAR,
        )
    return im


def write_gif(
    path: Path,
    frames: Sequence[np.ndarray],
    labels: Sequence[str] = (),
    max_side_px: int = 384,
    frame_ms: int = 400,
) -> None:
    """Animated GIF of the previews; the last frame holds three times longer."""
    if not frames:
        return
    ims = []
    for i, frame in enumerate(frames):
        im = _thumbnail(frame, max_side_px)
        if i < len(labels):
            _label(im, labels[i])
        # Fast octree palettes: median cut (PIL's default) costs ~40 ms a frame at this size.
        ims.append(im.quantize(colors=255, method=Image.Quantize.FASTOCTREE))
    durations = [frame_ms] * (len(ims) - 1) + [frame_ms * 3]
    buf = io.BytesIO()
    ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:], duration=durations, loop=0)
    atomic_write(path, buf.getvalue())


def _label(im: Image.Image, text: str) -> None:
    draw = ImageDraw.Draw(im)
    box = draw.textbbox((3, 3), text)
    draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=(0, 0, 0))
    draw.text((3, 3), text, fill=(255, 255, 255))


def write_contact_sheet(
    path: Path,
    frames: Sequence[np.ndarray],
    labels: Sequence[str],
    columns: int = 6,
    tile_px: int = 192,
) -> None:
    """All previews on one sheet, left to right, each labelled with its packet and scores."""
    if not frames:
        return
    tiles = [_thumbnail(f, tile_px) for f in frames]
    for tile, text in zip(tiles, labels, strict=False):
        _label(tile, text)
    tw, th = max(t.width for t in tiles), max(t.height for t in tiles)
    cols = min(columns, len(tiles))
    rows = -(-len(tiles) // cols)
    sheet = Image.new("RGB", (cols * (tw + 4) + 4, rows * (th + 4) + 4), (255, 255, 255))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, (4 + (i % cols) * (tw + 4), 4 + (i // cols) * (th + 4)))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    atomic_write(path, buf.getvalue())


def _new_figure(figsize: tuple[float, float]):
    # A bare Figure, not pyplot: no global backend switch, so notebooks keep inline plots.
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.add_subplot()


def _save_figure(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write(path, buf.getvalue())


def time_axis(times_s: Iterable[float]) -> tuple[float, str]:
    span = max((t for t in times_s if np.isfinite(t)), default=0.0)
    if span > 3 * 3600:
        return 3600.0, "h"
    if span > 3 * 60:
        return 60.0, "min"
    return 1.0, "s"


def plot_quality(
    path: Path,
    x: Sequence[float],
    psnr_db: Sequence[float],
    msssim: Sequence[float],
    xlabel: str,
    title: str,
    step: bool = False,
) -> None:
    """PSNR (left axis) and MS-SSIM (right axis) against packets or time."""
    fig, ax = _new_figure((7, 4))
    draw = ax.step if step else ax.plot
    draw(
        x,
        psnr_db,
        color="C0",
        marker="o",
        ms=3,
        label="PSNR",
        **({"where": "post"} if step else {}),
    )
    ax.set_xlabel(xlabel)
    if not step:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("PSNR (dB)", color="C0")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    draw2 = ax2.step if step else ax2.plot
    draw2(
        x,
        msssim,
        color="C3",
        marker="s",
        ms=3,
        label="MS-SSIM",
        **({"where": "post"} if step else {}),
    )
    ax2.set_ylabel("MS-SSIM (unitless, 0–1)", color="C3")
    ax.set_title(title)
    fig.legend(loc="lower right", bbox_to_anchor=(0.88, 0.15))
    _save_figure(fig, path)


def plot_timeline(
    path: Path, rows: Sequence[dict], windows_s: Sequence[tuple[float, float]] = (), title: str = ""
) -> None:
    """Each transmission as a bar on the time axis, coloured by outcome; visibility shaded."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    times = [r.get("t_tx_end_s", np.nan) for r in rows] + [
        r.get("t_arrival_s", np.nan) for r in rows
    ]
    scale, unit = time_axis(times)
    fig, ax = _new_figure((9, 4))
    horizon = max((t for t in times if t is not None and np.isfinite(t)), default=1.0)
    for start, end in windows_s:
        if start > horizon:
            break
        ax.axvspan(
            start / scale, min(end, horizon * 1.05) / scale, color="#ffe9a8", alpha=0.6, lw=0
        )
    seen = set()
    for r in rows:
        outcome = r.get("outcome", "")
        colour = OUTCOME_COLOURS.get(outcome, "black")
        seen.add(outcome)
        y = r.get("seq", 0)
        t0, t1 = r.get("t_tx_start_s", np.nan), r.get("t_tx_end_s", np.nan)
        if t0 is not None and np.isfinite(t0):
            ax.plot([t0 / scale, t1 / scale], [y, y], color=colour, lw=4, solid_capstyle="butt")
        ta = r.get("t_arrival_s", np.nan)
        if ta is not None and np.isfinite(ta):
            ax.plot([ta / scale], [y], marker="|", color=colour, ms=8)
    handles = [Patch(color=OUTCOME_COLOURS.get(o, "black"), label=o) for o in sorted(seen)]
    if windows_s:
        handles.append(Patch(color="#ffe9a8", label="visibility window"))
    ax.legend(handles=handles, loc="upper left", fontsize=8, ncols=2)
    ax.set_xlabel(f"time ({unit})")
    ax.set_ylabel("message sequence number")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title or "Transmissions (bar: on air, tick: arrival)")
    ax.grid(alpha=0.3)
    _save_figure(fig, path)
