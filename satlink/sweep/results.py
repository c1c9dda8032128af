"""A sweep's result: tables (results, replications, summary), band plots and files.

Percentiles are order statistics (the inverted empirical CDF, numpy's ``method="inverted_cdf"``):
every median, p10 and p90 is a value some replication produced, never an interpolation between
two runs (with 4 runs of 0.19, 0.19, 0.974, 0.974 the p90 is 0.974, not 0.739).

>>> quantile([1.0, 2.0, 3.0, math.inf], 0.5), quantile([0.19, 0.19, 0.974, 0.974], 0.9)
(2.0, 0.974)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from satlink.fileio import atomic_write
from satlink.replay import MSSSIM_TARGETS
from satlink.report import time_axis, write_sweep_html
from satlink.sweep.grid import Replication, SweepError

QUANTILES: tuple[tuple[str, float], ...] = (("median", 0.5), ("p10", 0.1), ("p90", 0.9))
TIME_FIGURES = (
    "time_to_first_preview_s",
    *(f"time_to_msssim_{t}_s" for t in MSSSIM_TARGETS),
    "time_to_full_quality_s",
)
SCORE_FIGURES = ("final_ms_ssim", "final_psnr_db")
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
FEW_RUNS = 10  # at most this many replications per line: plot every run instead of a band


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values as an order statistic: the smallest value with at
    least a share ``q`` of the values at or below it (rank ``ceil(q * n)``). +inf means 'never'
    and ranks last; the result is always one of the values (NaN when there are none)."""
    n = len(sorted_values)
    if n == 0:
        return math.nan
    rank = min(max(math.ceil(q * n - 1e-9), 1), n)  # 1-based; the epsilon absorbs q * n noise
    return float(sorted_values[rank - 1])


def cell(v: Any) -> Any:
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


def csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([cell(row.get(c)) for c in columns])
    return buf.getvalue()


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
            "stage1_complete",
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
        return [
            *cols,
            "no_picture_frac",
            "p_any_picture",
            "p_stage1_complete",
            "messages_sent_median",
        ]

    def results_csv(self) -> str:
        return csv_text(self.results_columns(), self.rows())

    def replications_csv(self) -> str:
        return csv_text(self.replications_columns(), self.replications)

    def summary_csv(self) -> str:
        return csv_text(self.summary_columns(), self.summary)

    def summary_table(self) -> str:
        """The summary as aligned text: median [p10, p90] per grid point and payload."""
        p90s = (r.get(f"{f}_p90") for r in self.summary for f in TIME_FIGURES)
        unit_s, unit = time_axis(v for v in p90s if v is not None)

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
                    *(str(cell(r[k])) for k in self.grid_keys),
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
            where = ", ".join(f"{k}={cell(v)}" for k, v in items[0][0].point)
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
                curves = np.array([curve(res, metric, axis, x * unit_s) for res in results])
                if metric == "psnr_db":
                    curves = np.minimum(curves, PSNR_PLOT_CAP_DB)
                # order statistics, as in summary.csv: a band edge is always some run's value
                p10, med, p90 = np.percentile(curves, [10, 50, 90], axis=0, method="inverted_cdf")
                ls = styles.get(payload, "-")
                if len(curves) <= FEW_RUNS:  # few runs: show each one, the band says little
                    for c in curves:
                        ax.step(x, c, where="post", color=colour, ls=ls, lw=0.6, alpha=0.45)
                else:
                    ax.fill_between(x, p10, p90, step="post", color=colour, alpha=0.1, lw=0)
                    for edge in (p10, p90):  # edges keep overlapping bands apart
                        ax.step(x, edge, where="post", color=colour, lw=0.5, alpha=0.6)
                n_label = f"{label} (n={len(curves)})"
                ax.step(x, med, where="post", color=colour, ls=ls, lw=2, label=n_label)
        for ax, metric in zip(axes, metrics, strict=True):
            ax.set_ylabel("MS-SSIM (unitless, 0–1)" if metric == "ms_ssim" else "PSNR (dB)")
            ax.grid(alpha=0.3)
        axes[-1].set_xlabel(xlabel)
        n = self.seeds * len(self.images)
        spread = "every run (thin)" if n <= FEW_RUNS else "10–90% band (order statistics)"
        axes[0].set_title(
            f"{self.scenario}: median (thick) and {spread}, n={n} replications per line; "
            f"mid-grey until the first picture",
            fontsize=9,
        )
        for ax, metric in zip(axes, metrics, strict=True):
            if metric == "ms_ssim":  # the thresholds of the summary's time_to_msssim_* figures
                for level in MSSSIM_TARGETS:
                    ax.axhline(level, color="0.4", ls="--", lw=0.8)
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
        unit_s, unit = time_axis([t_max])
        return np.linspace(0.0, t_max / unit_s, 400), unit_s, f"time since the start ({unit})"

    def write(self, out_dir: str | Path | None = None, plots: bool = True) -> Path:
        """Write the tables, plots and sweep.json into ``out_dir`` (default: the sweep's)."""
        out = Path(out_dir) if out_dir is not None else self.out_dir
        if out is None:
            raise SweepError("out_dir: the sweep ran without one; give a folder to write to")
        atomic_write(out / "results.csv", self.results_csv().encode())
        atomic_write(out / "replications.csv", self.replications_csv().encode())
        atomic_write(out / "summary.csv", self.summary_csv().encode())
        if plots and self._rows:
            import io

            for axis, name in (
                ("packets", "quality_vs_packets.png"),
                ("time", "quality_vs_time.png"),
            ):
                buf = io.BytesIO()
                self.band_figure(axis).savefig(buf, format="png", dpi=110)
                atomic_write(out / name, buf.getvalue())
        info = {
            "scenario": self.scenario,
            "grid": self.grid,
            "payloads": list(self.payloads),
            "images": self.images,
            "seeds": self.seeds,
            "root_seed": self.root_seed,
            "stats": self.stats,
        }
        atomic_write(out / "sweep.json", (json.dumps(info, indent=2, default=str) + "\n").encode())
        if plots and self.summary:
            write_sweep_html(self, out)  # report.html: the summary and the plots, one page
        return out


def curve(res: Mapping[str, Any], metric: str, axis: str, x: np.ndarray) -> np.ndarray:
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


def summarise_groups(
    grid_keys: Sequence[str], groups: Mapping[tuple, list]
) -> list[dict[str, Any]]:
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
                row[f"{name}_{label}"] = quantile(values, q)
            row[f"{name}_reached_frac"] = sum(f[name] is not None for f in figs) / len(figs)
        for name in SCORE_FIGURES:
            values = sorted(f[name] for f in figs)
            for label, q in QUANTILES:
                row[f"{name}_{label}"] = quantile(values, q)
        row["no_picture_frac"] = sum(f["no_picture"] for f in figs) / len(figs)
        row["p_any_picture"] = 1.0 - row["no_picture_frac"]
        row["p_stage1_complete"] = sum(f["stage1_complete"] for f in figs) / len(figs)
        row["messages_sent_median"] = quantile(sorted(f["messages_sent"] for f in figs), 0.5)
        table.append(row)
    return table
