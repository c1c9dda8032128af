"""Report files: atomic writes (also with concurrent writers), CSV and JSON contents, plots."""

from __future__ import annotations

import csv
import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from satlink import report


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

    monkeypatch.setattr(report.os, "replace", broken_replace)
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
