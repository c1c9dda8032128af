"""report.html: self-contained, and in a real headless Chromium (offline) it loads without console
errors and its slider changes the preview shown."""

from __future__ import annotations

import re
import types

import pytest
from cdp import Browser, find_chromium

from satlink import report
from satlink.replay import replay


@pytest.fixture(scope="module")
def replay_dir(noisy_replay):
    out, result = noisy_replay
    assert len(result.previews) >= 2, "the fixture needs at least two previews to slide over"
    return out, result


def test_replay_writes_a_self_contained_report(replay_dir):
    out, result = replay_dir
    page = (out / "report.html").read_text()
    # nothing to fetch: no external script, stylesheet, image or frame
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page
    assert all("src=" not in tag for tag in re.findall(r"<script[^>]*>", page))
    assert page.count('<img class="fig"') == 4  # both quality plots, timeline, contact sheet
    assert page.count("data:image/jpeg;base64,") == len(result.previews)
    # the trace table has one row per packets.csv row, and the link budget is there
    assert page.count('<tr id="row-') == len(result.rows)
    assert "Link budget" in page and "fspl_db" in page


def _chromium():
    path = find_chromium()
    if path is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium; .ci/run does it)")
    return path


def test_report_loads_in_headless_chromium_and_the_slider_moves(replay_dir):
    out, result = replay_dir
    with Browser(_chromium()) as b:
        b.open((out / "report.html").as_uri())
        assert b.exceptions == [] and b.console_errors == []
        assert all(u.startswith(("file:", "data:")) for u in b.requests), b.requests
        img = "document.getElementById('preview')"
        state = f"[{img}.dataset.number, {img}.src.length, caption.textContent]"
        number0, src_len0, caption0 = b.evaluate(state)
        src0 = b.evaluate(f"{img}.src")
        assert number0 == "1" and src_len0 > 1000 and "Preview 1 of" in caption0
        shot0 = b.screenshot()
        # a real key press on the focused slider, as a user would move it
        b.evaluate("document.getElementById('slider').focus(); 0")
        b.press("ArrowRight", 39)
        number1, _, caption1 = b.evaluate(state)
        assert number1 == "2" and "Preview 2 of" in caption1
        assert b.evaluate(f"{img}.src") != src0, "the slider did not change the picture"
        assert b.screenshot() != shot0
        # the triggering trace row is highlighted and the chart cursor moved
        assert b.evaluate("document.querySelectorAll('tr.hl').length") == 1
        assert b.evaluate("document.getElementById('cursor').getAttribute('x1')") != "46"
        # to the end with the End key: the last preview
        b.press("End", 35)
        assert b.evaluate(f"{img}.dataset.number") == str(result.previews[-1].number)
        # overlay: drawn at latent resolution while missing regions are shown
        assert b.evaluate("document.getElementById('overlay').width") > 0
        assert b.exceptions == [] and b.console_errors == []


def test_sweep_report_loads_in_headless_chromium(tmp_path):
    row = {"channel.loss.p": 0.1, "payload": "rvq", "replications": 4, "no_picture_frac": 0.25}
    for fig in ("time_to_first_preview_s", "time_to_msssim_0.8_s", "time_to_msssim_0.9_s",
                "time_to_full_quality_s"):  # fmt: skip
        row |= {f"{fig}_median": 60.0, f"{fig}_p10": 1.0, f"{fig}_p90": float("inf")}
    row["time_to_msssim_0.9_s_reached_frac"] = 0.5
    for fig in ("final_ms_ssim", "final_psnr_db"):
        row |= {f"{fig}_median": 0.9, f"{fig}_p10": 0.19, f"{fig}_p90": 0.97}
    result = types.SimpleNamespace(
        scenario="bds3-rsmc-geo", grid={"channel.loss.p": [0.1]}, grid_keys=["channel.loss.p"],
        payloads=("rvq",), images=["a.png"], seeds=4, root_seed=0, summary=[row],
        stats={"replications": 4},
    )  # fmt: skip
    path = report.write_sweep_html(result, tmp_path)
    page = path.read_text()
    assert "n = 4" in page and "never" in page and "1.00 [" not in page
    with Browser(_chromium()) as b:
        b.open(path.as_uri())
        assert b.exceptions == [] and b.console_errors == []
        assert b.evaluate("document.getElementById('n-rows').textContent") == "1"


def test_a_replay_with_no_picture_still_makes_a_working_page(tiny, small_image, tmp_path):
    lossy = ["channel.loss.model='bernoulli'", "channel.loss.p=1.0"]
    result = replay("bds3-rsmc-geo", small_image, codec=tiny, out_dir=tmp_path, overrides=lossy)
    assert result.previews == []
    page = (tmp_path / "report.html").read_text()
    assert "never" in page and "lost (" not in page  # no quality plots without a picture
    with Browser(_chromium()) as b:
        b.open((tmp_path / "report.html").as_uri())
        assert b.exceptions == [] and b.console_errors == []
        assert b.evaluate("document.getElementById('slider').disabled") is True
        assert "No picture arrived" in b.evaluate("document.getElementById('caption').textContent")
