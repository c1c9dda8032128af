"""Report files: atomic writes (also with concurrent writers), CSV and JSON contents, the
summary's rounding, and what the figures show (titles, thresholds, events, time span, captions)."""

from __future__ import annotations

import csv
import json
import math
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from satlink import fileio, report


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "a.bin"
    report.atomic_write(path, b"one")
    report.atomic_write(path, b"two")
    assert path.read_bytes() == b"two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.bin"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "a.bin"
    report.atomic_write(path, b"old")

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(fileio.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        report.atomic_write(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]  # temporary removed


def test_two_writers_of_one_path_never_mix_or_fail(tmp_path):
    """Many writes from two threads at once: every write succeeds, the file always holds one
    writer's whole content, and no temporary file is left behind."""
    path = tmp_path / "shared.json"
    payloads = {name: (name * 50_000).encode() for name in ("a", "b")}
    errors: list[BaseException] = []
    seen: set[bytes] = set()
    stop = threading.Event()

    def writer(name: str) -> None:
        try:
            for _ in range(200):
                report.atomic_write(path, payloads[name])
        except BaseException as exc:  # collected: a thread's exception would be lost
            errors.append(exc)

    def reader() -> None:
        while not stop.is_set():
            if path.exists():
                seen.add(path.read_bytes())

    threads = [threading.Thread(target=writer, args=(n,)) for n in payloads]
    watch = threading.Thread(target=reader)
    watch.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watch.join()
    assert errors == []
    assert path.read_bytes() in payloads.values()
    assert seen <= set(payloads.values()), "a reader saw a half-written or mixed file"
    assert [p.name for p in tmp_path.iterdir()] == ["shared.json"]


def test_write_csv_columns_units_and_values(tmp_path):
    rows = [
        {"seq": 0, "t_arrival_s": 0.969577123, "outcome": "delivered", "psnr_db": 7.5},
        {"seq": 1, "t_arrival_s": math.nan, "outcome": "lost", "rx_verdict": ""},
    ]
    report.write_csv(tmp_path / "packets.csv", rows)
    with open(tmp_path / "packets.csv") as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == ["seq", "t_arrival_s", "outcome", "psnr_db", "rx_verdict"]
    assert got[0]["t_arrival_s"] == "0.969577"  # six significant digits
    assert got[1]["t_arrival_s"] == "" and got[1]["psnr_db"] == ""  # NaN and missing: empty
    assert got[1]["outcome"] == "lost"


def test_write_json_numpy_paths_and_non_finite(tmp_path):
    obj = {
        "n": np.int64(3),
        "x": np.float32(0.5),
        "bad": np.float32(np.inf),  # (a float64 is a Python float: json writes Infinity)
        "a": np.arange(3),
        "p": Path("/x/y"),
    }
    report.write_json(tmp_path / "s.json", obj)
    assert json.loads((tmp_path / "s.json").read_text()) == {
        "n": 3,
        "x": 0.5,
        "bad": None,
        "a": [0, 1, 2],
        "p": "/x/y",
    }
    with pytest.raises(TypeError, match="cannot write object"):
        report.write_json(tmp_path / "t.json", {"o": object()})


def _is_png(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


def test_images_and_plots_are_written(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8) for _ in range(3)]
    report.save_png(tmp_path / "p.png", frames[0])
    assert _is_png(tmp_path / "p.png") == (60, 40)
    report.write_contact_sheet(tmp_path / "sheet.png", frames, ["#1", "#2", "#3"])
    assert _is_png(tmp_path / "sheet.png")[0] > 60
    report.write_gif(tmp_path / "p.gif", frames, ["#1", "#2", "#3"])
    with Image.open(tmp_path / "p.gif") as gif:
        assert gif.n_frames == 3
    report.plot_quality(tmp_path / "q.png", [1, 2, 3], [20, 25, 30], [0.5, 0.7, 0.9], "n", "t")
    assert _is_png(tmp_path / "q.png")
    rows = [
        {"seq": 0, "t_tx_start_s": 0, "t_tx_end_s": 1, "t_arrival_s": 1.2, "outcome": "delivered"},
        {"seq": 1, "t_tx_start_s": 1, "t_tx_end_s": 2, "t_arrival_s": math.nan, "outcome": "lost"},
    ]
    report.plot_timeline(tmp_path / "t.png", rows, [(0.0, 5.0)], "timeline")
    assert _is_png(tmp_path / "t.png")
    report.write_gif(tmp_path / "none.gif", [])  # nothing to show: no file
    assert not (tmp_path / "none.gif").exists()


@pytest.mark.parametrize(
    ("times", "unit"), [([10.0, 100.0], "s"), ([0.0, 900.0], "min"), ([20_000.0], "h")]
)
def test_time_axis_picks_a_readable_unit(times, unit):
    assert report.time_axis(times)[1] == unit


def test_rounded_by_unit_keeps_order_and_drops_non_finite():
    got = report.rounded(
        {"t_s": 60.2500001, "x_db": 22.84123, "ms_ssim": 0.918812, "n": 3, "bad_s": math.inf,
         "counts": {"lost": 2}, "ok": True, "other": 1 / 3, "steps": [{"delay_s": 0.123456}]}
    )  # fmt: skip
    assert got == {
        "t_s": 60.25, "x_db": 22.84, "ms_ssim": 0.9188, "n": 3, "bad_s": None,
        "counts": {"lost": 2}, "ok": True, "other": 0.333333, "steps": [{"delay_s": 0.123}],
    }  # fmt: skip
    assert list(got) == ["t_s", "x_db", "ms_ssim", "n", "bad_s", "counts", "ok", "other", "steps"]


ROWS = [
    {"seq": 0, "attempt": 0, "outcome": "delivered", "t_tx_start_s": 10.0, "t_tx_end_s": 11.0,
     "t_arrival_s": 11.3, "rx_verdict": "accepted", "preview": 1},
    {"seq": 1, "attempt": 0, "outcome": "lost", "t_tx_start_s": 40.0, "t_tx_end_s": 41.0,
     "t_arrival_s": math.nan, "rx_verdict": "", "preview": ""},
    {"seq": 2, "attempt": 0, "outcome": "waited-for-visibility", "t_tx_start_s": 100.0,
     "t_tx_end_s": math.nan, "t_arrival_s": math.nan, "wait_s": 30.0, "rx_verdict": ""},
    {"seq": 2, "attempt": 0, "outcome": "retransmitted", "t_tx_start_s": 100.0,
     "t_tx_end_s": 101.0, "t_arrival_s": 101.3, "rx_verdict": "corrupted", "preview": ""},
    {"seq": 2, "attempt": 1, "outcome": "delivered", "t_tx_start_s": 130.0, "t_tx_end_s": 131.0,
     "t_arrival_s": 131.3, "rx_verdict": "accepted", "preview": 2},
]  # fmt: skip


def test_events_and_messages_sent_count_transmissions_only():
    assert report.messages_sent(ROWS) == [1, 2, 2, 3, 4]  # the wait is no transmission
    events = report.transmission_events(ROWS)
    assert [(e["outcome"], e["messages_sent"], e["t_s"]) for e in events] == [
        ("lost", 2, 41.0),
        ("retransmitted", 3, 101.3),
    ]


def test_quality_figure_has_title_thresholds_and_event_marks():
    from satlink.report.figures import quality_figure

    title = report.run_title("photo.png", "leo-pass-budget", 7)
    fig = quality_figure([1, 2], [20.0, 25.0], [0.7, 0.95], "messages sent", title,
                         events=[(1.5, "lost"), (1.7, "corrupted")])  # fmt: skip
    ax, ax2 = fig.get_axes()
    assert ax.get_title() == "photo.png · leo-pass-budget · seed 7"
    levels = sorted(line.get_ydata()[0] for line in ax2.get_lines() if line.get_linestyle() == "--")
    assert levels == [0.8, 0.9]
    legend = [t.get_text() for t in ax2.get_legend().get_texts()]
    assert "lost (1)" in legend and "corrupted (1)" in legend
    marks = [line for line in ax.get_lines() if line.get_marker() in ("x", "X")]
    assert [list(m.get_xdata()) for m in marks] == [[1.5], [1.7]]


def test_timeline_spans_the_visibility_window_in_one_stated_unit():
    from satlink.report.figures import timeline_figure

    # transmissions end at 131 s, but the pass they used lasts until 474 s
    fig = timeline_figure(ROWS, [(0.0, 474.0), (6000.0, 6474.0)], "t")
    (ax,) = fig.get_axes()
    assert ax.get_xlabel() == "time since the start (min)"
    assert ax.get_xlim()[1] >= 474.0 / 60  # the window, not the last transmission
    assert ax.get_xlim()[1] < 6000.0 / 60  # a window that opened later is not shown
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 1 and hatched[0].get_width() == pytest.approx(30.0 / 60)  # the wait
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "waited-for-visibility" in legend and "visibility window" in legend


def test_contact_sheet_captions_sit_below_the_pictures(tmp_path):
    black = np.zeros((64, 64, 3), np.uint8)
    report.write_contact_sheet(tmp_path / "s.png", [black, black], ["#1 · packet 0\nPSNR 1 dB"] * 2,
                               tile_px=64)  # fmt: skip
    sheet = np.asarray(Image.open(tmp_path / "s.png").convert("RGB"))
    tile = sheet[4 : 4 + 64, 8 : 8 + 64]
    assert (tile == 0).all(), "a caption was drawn on the picture"
    below = sheet[4 + 64 : 4 + 64 + 30, 8 : 8 + 64]
    assert (below < 128).any() and (below > 128).any()  # dark text on white, under the tile


# -- every column and key documented (docs/OUTPUTS.md) -------------------------------------------


def _documented() -> set[str]:
    from satlink.sweep import TIME_FIGURES

    text = (Path(__file__).parents[1] / "docs" / "OUTPUTS.md").read_text()
    names = set(re.findall(r"`([^`\s]+)`", text))
    for pattern in [n for n in names if n.startswith("<time>")]:
        names |= {pattern.replace("<time>", t) for t in TIME_FIGURES}
    return names


def test_every_replay_column_and_summary_key_is_documented(tiny, small_image, tmp_path):
    from satlink.replay import replay

    replay("bds3-rsmc-geo", small_image, codec=tiny, out_dir=tmp_path)
    with open(tmp_path / "packets.csv") as f:
        columns = next(csv.reader(f))
    summary = json.loads((tmp_path / "summary.json").read_text())
    keys = [*summary, *summary["counts"], *summary["payload"], *summary["versions"]]
    documented = _documented()
    assert [c for c in columns if c not in documented] == []
    assert [k for k in keys if k not in documented] == []
    assert summary["final_ms_ssim"] == round(summary["final_ms_ssim"], 4)  # rounded on disk
    assert isinstance(summary["scenario"], str)  # no {"scenario": {"scenario": ...}}


def test_every_sweep_column_is_documented():
    from satlink.sweep import SweepResult

    empty = SweepResult("s", {}, (), [], 1, 0, [], [], None, {})
    columns = [
        *empty.results_columns(),
        *empty.replications_columns(),
        *empty.summary_columns(),
    ]
    documented = _documented()
    assert [c for c in columns if c not in documented] == []
