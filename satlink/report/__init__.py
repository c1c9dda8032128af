"""Reports people read: the files, figures, HTML page and packet capture of a replay or sweep.

=================== ===========================================================================
module              owns
=================== ===========================================================================
``files``           atomic writes, JSON, CSV, PNG, rounding for the summary file
``figures``         quality plots, timeline, contact sheet, GIF (titles, thresholds, events)
``html``            self-contained pages: inline data, images and script, tables
``replay.js``       the script of a replay's ``report.html`` (package data)
``replay_files``    everything of a replay folder from a ``ReplayResult``
``pcap``            ``packets.pcap`` (link type DLT_USER0) and the shipped Lua dissector
``sweep_page``      a sweep's ``report.html``
=================== ===========================================================================

The columns and keys of every file are documented in ``docs/OUTPUTS.md``.

>>> from satlink import report
>>> report.time_axis([0.0, 900.0])
(60.0, 'min')
>>> report.dissector_path().is_file()
True
"""

from __future__ import annotations

from satlink.fileio import atomic_write, save_png
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
from satlink.report.files import rounded, write_csv, write_json
from satlink.report.html import render_page, table_html, write_page
from satlink.report.pcap import DLT_USER0, dissector_path, read_pcap, write_pcap
from satlink.report.replay_files import (
    coverage_maps,
    write_replay_figures,
    write_replay_html,
    write_replay_pcap,
    write_replay_report,
)
from satlink.report.sweep_page import write_sweep_html

__all__ = [
    "DLT_USER0",
    "MSSSIM_THRESHOLDS",
    "OUTCOME_COLOURS",
    "atomic_write",
    "coverage_maps",
    "dissector_path",
    "messages_sent",
    "plot_quality",
    "plot_timeline",
    "read_pcap",
    "render_page",
    "rounded",
    "run_title",
    "save_png",
    "table_html",
    "time_axis",
    "transmission_events",
    "write_contact_sheet",
    "write_csv",
    "write_gif",
    "write_json",
    "write_page",
    "write_pcap",
    "write_replay_figures",
    "write_replay_html",
    "write_replay_pcap",
    "write_replay_report",
    "write_sweep_html",
]
