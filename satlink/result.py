"""What one replay produced: :class:`ReplayResult`, the one result schema of satlink.

:func:`satlink.replay` returns it; the report writers (:mod:`satlink.report`), the sweep and the
command line read it. ``summary`` holds the figures of ``summary.json`` (names
with their units: ``time_to_first_preview_s``, ``final_ms_ssim``), ``rows`` the lines of
``packets.csv``, ``previews`` the receiver's pictures in order. :class:`Transmission` is the run
of the link behind it: the plan sent, the receiver and every arrival.

>>> import satlink
>>> result = satlink.replay("bds3-rsmc-geo", seed=1)          # doctest: +SKIP
>>> print(result.summary_table())                            # doctest: +SKIP
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from satlink.channel import Trace
from satlink.packets import TransmitPlan
from satlink.receiver import Arrival, Preview, Receiver
from satlink.scenario import Scenario

__all__ = ["ReplayResult", "Transmission"]


@dataclass
class Transmission:
    """One run of the link: what it carried and what the receiver made of every delivery."""

    plan: TransmitPlan
    receiver: Receiver
    arrivals: list[Arrival]
    trace: Trace | None  # None when interrupted before the link finished
    interrupted: bool = False
    # copies that arrived changed (bit errors), by (wire seq, arrival time): for packets.pcap
    received_bytes: dict[tuple[int, float], bytes] = field(default_factory=dict, repr=False)

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


@dataclass
class ReplayResult:
    """One replay: the scenario and seed it ran, ``summary`` (``summary.json``), ``rows``
    (``packets.csv``), the ``previews`` in order, the link's ``trace`` (None if interrupted
    first), the visibility windows (``windows_s``, (start, end) pairs in seconds), the output
    folder if any, and the :class:`Transmission` behind it."""

    scenario: Scenario
    seed: int
    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    previews: list[Preview]
    trace: Trace | None
    interrupted: bool = False
    out_dir: Path | None = None
    windows_s: list[tuple[float, float]] = field(default_factory=list)
    transmission: Transmission | None = field(default=None, repr=False)  # plan, bytes received

    def summary_table(self) -> str:
        s = self.summary

        def fmt_t(v):
            return "never" if v is None else f"{v:,.1f} s"

        def fmt(v, spec):
            return "-" if v is None else format(v, spec)

        c = s["counts"]
        lines = [
            f"scenario              {s['scenario']}  (seed {s['seed']})",
            f"image                 {s['image']}  {s['image_width_px']}×{s['image_height_px']} px",
            f"packets               {c['packets']} × {s['packet_size_bytes']} B"
            f"  ({c['wire_messages']} messages on the wire)",
            f"sent / delivered      {c['transmissions']} / {c['delivered']}",
            f"lost / corrupted      {c['lost']} / {c['corrupted']}",
            f"retransmitted         {c['retransmitted']}   dropped {c['dropped']}"
            f"   abandoned {c.get('abandoned', 0)}",
            f"previews              {len(self.previews)}",
            f"first preview         {fmt_t(s['time_to_first_preview_s'])}",
            f"MS-SSIM ≥ 0.9         {fmt_t(s['time_to_msssim_0.9_s'])}",
            f"full quality          {fmt_t(s['time_to_full_quality_s'])}",
            f"final PSNR            {fmt(s['final_psnr_db'], '.2f')} dB",
            f"final MS-SSIM         {fmt(s['final_ms_ssim'], '.4f')}",
        ]
        lines += [f"WARNING: {w}" for w in s.get("warnings", [])]
        if self.interrupted:
            lines.append("INTERRUPTED: files hold what arrived before Ctrl-C")
        return "\n".join(lines)
