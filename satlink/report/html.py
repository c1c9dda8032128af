"""``report.html``: one self-contained page per replay (and per sweep) to open, scroll and send.

Nothing is fetched from the network: previews and figures are inlined as ``data:`` images, the
data as JSON in the page and the script inline, so the file works offline, attached to a mail.

The replay page has a slider over the previews: each shows its time, scores, the fate of the
transmission that made it, and (RVQ payloads) a red overlay over the latent positions with no
index yet and amber where later stages are still missing; below it are a quality chart with a
cursor at the current preview, the figures, the link budget and the trace as a table.

>>> page = render_page("t", "<p>hi</p>", data={"n": 1}, script="console.log(DATA.n);")
>>> page.startswith("<!DOCTYPE html>") and "http" not in page.split("<body>")[0]
True
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from satlink.fileio import atomic_write
from satlink.report.files import json_default, rounded

__all__ = [
    "data_uri",
    "figures_html",
    "image_data_uri",
    "render_page",
    "table_html",
    "write_page",
]

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:12px 20px;color:#222}
h1{font-size:20px;margin:8px 0}h2{font-size:16px;margin:22px 0 6px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px;
text-align:right;white-space:nowrap}th{background:#f3f3f3;position:sticky;top:0}
td.l,th.l{text-align:left}tr.hl td{background:#fff3b0}.wrap{max-height:420px;overflow:auto}
.viewer{display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start}
.stage{position:relative;display:inline-block;line-height:0;border:1px solid #ccc}
.stage img{max-width:560px;max-height:560px;image-rendering:auto}
.stage canvas{position:absolute;left:0;top:0;width:100%;height:100%;pointer-events:none}
#slider{width:100%}.facts td{text-align:left}.muted{color:#777}.bad{color:#d62728}
.ok{color:#2ca02c}img.fig{max-width:100%;border:1px solid #eee}
"""


def data_uri(data: bytes, mime: str) -> str:
    """``data:`` URI of some bytes."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_data_uri(image: np.ndarray, max_side_px: int = 640, quality: int = 88) -> str:
    """A preview as an inline JPEG (the PNGs in ``previews/`` stay lossless)."""
    im = Image.fromarray(image).convert("RGB")
    scale = max_side_px / max(im.size)
    if scale < 1:
        size = (round(im.width * scale), round(im.height * scale))
        im = im.resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return data_uri(buf.getvalue(), "image/jpeg")


def figures_html(folder: Path, names: Sequence[str]) -> str:
    """The PNG figures of ``folder`` that exist, inlined as images."""
    parts = []
    for name in names:
        path = folder / name
        if path.is_file():
            src = data_uri(path.read_bytes(), "image/png")
            parts.append(f'<p><img class="fig" alt="{html.escape(name)}" src="{src}"></p>')
    return "".join(parts)


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v == "":
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.6g}"
    if isinstance(v, list | tuple | dict):
        return html.escape(json.dumps(v, default=json_default))
    return html.escape(str(v))


def table_html(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    row_ids: Sequence[str] | None = None,
    max_rows: int = 5000,
) -> str:
    """An HTML table of ``rows`` (dicts); text columns left-aligned, numbers right."""
    if columns is None:
        columns = []
        for r in rows:
            columns.extend(k for k in r if k not in columns)
    text_cols = {
        c for c in columns if any(isinstance(r.get(c), str) and r.get(c) != "" for r in rows)
    }

    def cls(c: str) -> str:
        return ' class="l"' if c in text_cols else ""

    head = "".join(f"<th{cls(c)}>{html.escape(c)}</th>" for c in columns)
    body = []
    for i, r in enumerate(rows[:max_rows]):
        rid = f' id="{row_ids[i]}"' if row_ids else ""
        body.append(
            f"<tr{rid}>" + "".join(f"<td{cls(c)}>{_cell(r.get(c))}</td>" for c in columns) + "</tr>"
        )
    more = (
        f'<p class="muted">first {max_rows} of {len(rows)} rows; all are in the CSV</p>'
        if len(rows) > max_rows
        else ""
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def render_page(title: str, body: str, data: Mapping[str, Any], script: str) -> str:
    """A whole page: inline CSS, the data as JSON (``DATA`` in the script) and the script."""
    # "</" inside a script element would end it; JSON allows "<\\/" for "</".
    payload = json.dumps(rounded(dict(data)), default=json_default).replace("</", "<\\/")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
        f"{body}\n"
        f'<script id="data" type="application/json">{payload}</script>\n'
        '<script>\n"use strict";\n'
        "const DATA = JSON.parse(document.getElementById('data').textContent);\n"
        f"{script}\n</script>\n</body></html>\n"
    )


def write_page(path: Path, title: str, body: str, data: Mapping[str, Any], script: str) -> None:
    """Render and write a page atomically."""
    atomic_write(path, render_page(title, body, data, script).encode("utf-8"))
