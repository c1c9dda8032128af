"""A sweep's ``report.html``: parameters, the summary table (median and p10/p90 per grid point
and payload, with n), the band plots and links to the CSV files; self-contained like a replay's.

>>> from satlink.sweep import sweep
>>> result = sweep("bds3-rsmc-geo", seeds=4, out_dir="sweep-out")   # doctest: +SKIP
>>> write_sweep_html(result, result.out_dir)                        # doctest: +SKIP
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from satlink.report.figures import time_axis
from satlink.report.html import figures_html, table_html, write_page

__all__ = ["write_sweep_html"]

SWEEP_FIGURES = ("quality_vs_packets.png", "quality_vs_time.png")
SWEEP_SCRIPT = """
document.getElementById('n-rows').textContent = String(DATA.rows);
"""


def _summary_rows(result: Any) -> tuple[list[dict[str, Any]], str]:
    p90s = [
        r.get(f"{f}_p90")
        for r in result.summary
        for f in ("time_to_first_preview_s", "time_to_msssim_0.9_s")
    ]
    unit_s, unit = time_axis(v for v in p90s if v is not None and math.isfinite(v))

    def t(v: Any) -> str:
        if v is None:
            return ""
        return "never" if math.isinf(v) else f"{v / unit_s:,.2f}"

    rows = []
    for r in result.summary:
        row: dict[str, Any] = {k: r[k] for k in result.grid_keys}
        row["payload"] = r["payload"]
        row["n"] = r["replications"]
        for fig, label in (
            ("time_to_first_preview_s", "first preview"),
            ("time_to_msssim_0.8_s", "MS-SSIM≥0.8"),
            ("time_to_msssim_0.9_s", "MS-SSIM≥0.9"),
            ("time_to_full_quality_s", "full quality"),
        ):
            row[f"{label} ({unit}) median [p10, p90]"] = (
                f"{t(r[fig + '_median'])} [{t(r[fig + '_p10'])}, {t(r[fig + '_p90'])}]"
            )
        row["reached 0.9"] = f"{100 * r['time_to_msssim_0.9_s_reached_frac']:.0f}%"
        for fig, spec in (("final_ms_ssim", ".3f"), ("final_psnr_db", ".1f")):
            row[f"{fig} median [p10, p90]"] = (
                f"{r[fig + '_median']:{spec}} [{r[fig + '_p10']:{spec}}, {r[fig + '_p90']:{spec}}]"
            )
        row["no picture"] = f"{100 * r['no_picture_frac']:.0f}%"
        rows.append(row)
    return rows, unit


def write_sweep_html(result: Any, out_dir: str | Path) -> Path:
    """Write ``report.html`` into ``out_dir`` for a :class:`satlink.sweep.SweepResult` whose
    tables and plots are already there; returns its path."""
    out = Path(out_dir)
    rows, unit = _summary_rows(result)
    n = result.seeds * len(result.images)
    figs = figures_html(out, SWEEP_FIGURES)
    params = {
        "scenario": result.scenario,
        "grid": ", ".join(f"{k} = {v}" for k, v in result.grid.items()) or "(none)",
        "payloads": ", ".join(result.payloads),
        "images": ", ".join(result.images),
        "replications per row (n)": f"{result.seeds} seeds × {len(result.images)} image(s) = {n}",
        "root seed": result.root_seed,
        "run": ", ".join(f"{k} {v}" for k, v in result.stats.items()),
    }
    facts = "".join(
        f"<tr><th class='l'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in params.items()
    )
    body = f"""
<h1>Sweep: {html.escape(result.scenario)} (n = {n} per row)</h1>
<p class="muted">One self-contained page (no network). Percentiles are order statistics: every
p10, median and p90 is a value some replication produced (docs/OUTPUTS.md). 'never' = not
reached by that share of replications. Times in {unit}.</p>
<table class="facts">{facts}</table>
<h2>Summary (<span id="n-rows"></span> rows)</h2>
<div class="wrap">{table_html(rows)}</div>
<h2>Figures</h2>{figs}
<p class="muted">Files: results.csv, replications.csv, summary.csv, sweep.json.</p>
"""
    path = out / "report.html"
    write_page(path, f"satlink sweep: {result.scenario}", body, {"rows": len(rows)}, SWEEP_SCRIPT)
    return path
