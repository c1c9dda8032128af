"""`satlink compare` (issue 14): six arms at the same bytes on the wire, against loss."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from satlink.compare import ARMS, arm_plan, compare, loss_overrides
from satlink.packets import parse_packet
from satlink.scenario import load_scenario


def test_loss_overrides_give_the_asked_long_run_loss() -> None:
    for loss in (0.0, 0.1, 0.3):
        sc = load_scenario("bds3-rsmc-geo", loss_overrides("gilbert-elliott", loss))
        assert sc.channel.loss.stationary_loss() == pytest.approx(loss, abs=1e-6)
    sc = load_scenario("bds3-rsmc-geo", loss_overrides("bernoulli", 0.2))
    assert (sc.channel.loss.model, sc.channel.loss.p) == ("bernoulli", 0.2)
    with pytest.raises(ValueError, match="loss model 'fade'"):
        loss_overrides("fade", 0.1)


@pytest.fixture(scope="module")
def wide_image(small_image) -> np.ndarray:
    """256 x 512 px: the tiny codec's 2 stages of 16 x 32 indices take 2 packets of 360 bytes
    (686 4-bit indices each: stage 1 and a third of stage 2, then the rest of stage 2)."""
    return np.ascontiguousarray(np.tile(small_image, (2, 4, 1)))


def test_every_arm_fits_the_budget(tiny, wide_image) -> None:
    sc = load_scenario("bds3-rsmc-geo", loss_overrides("bernoulli", 0.1))
    code = tiny.encode(wide_image)
    fits: dict = {}
    plans = {a: arm_plan(a, sc, wide_image, code, (1.0, 0.1, 0.1, 0.1, 0.1), 0.1, fits=fits)
             for a in ARMS}  # fmt: skip
    budget = plans["rvq"].plan.packet_count
    assert budget == 2
    for arm, ap in plans.items():
        if ap.plan is not None:
            assert ap.plan.packet_count <= budget, arm
    uep = plans["rvq-uep"].plan.messages
    kinds = [(p[0] >> 2) & 3 for p in uep]
    assert kinds == [0, 2]  # stage 1 and its repair: stage 2 with its repair would not fit
    assert plans["rvq-arq"].arq and not plans["rvq"].arq
    # ARQ: floor(2 * 0.9) = 1 source, so that the expected transmissions fit the budget
    assert [parse_packet(p).stage for p in plans["rvq-arq"].plan.messages] == [0]
    assert plans["avif-fec"].info["file_packets"] == 1  # 1 + ceil(1.0 * 1) = 2 packets


def test_compare_writes_csv_and_figure_and_is_deterministic(tmp_path, tiny, wide_image) -> None:
    kw = dict(losses=[0.0, 0.4], seeds=3, arms=["rvq", "rvq-uep", "avif"], codec=tiny)
    res = compare("bds3-rsmc-geo", wide_image, out_dir=tmp_path, **kw)
    assert (tmp_path / "compare.png").stat().st_size > 10_000
    with open(tmp_path / "compare.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 * 2 * 3  # models x losses x arms
    for r in res.summary:
        if r["loss"] == 0.0:
            assert r["p_any_picture_median"] == 1.0 and r["messages_sent_median"] > 0
        assert r["final_ms_ssim_p10"] <= r["final_ms_ssim_median"] <= r["final_ms_ssim_p90"]
        assert math.isinf(r["time_to_msssim_0.8_s_p90"]) or r["time_to_msssim_0.8_s_p90"] >= 0
    again = compare("bds3-rsmc-geo", wide_image, **kw)
    assert [r["final_ms_ssim"] for r in again.rows] == [r["final_ms_ssim"] for r in res.rows]
    with pytest.raises(ValueError, match="arm 'jpeg-fec'"):
        compare("bds3-rsmc-geo", wide_image, arms=["jpeg-fec"], codec=tiny)


def test_cli_compare_one_line_on_bad_arm(capsys) -> None:
    from satlink.cli import main

    assert main(["compare", "--arms", "rvq,zip", "--out", "x", "--quiet"]) == 2
    assert "arm 'zip'" in capsys.readouterr().err
    _ = np  # numpy is part of the fixtures' world


def test_the_figure_leaves_the_matplotlib_backend_alone(tiny, small_image) -> None:
    """A notebook keeps its inline plots: no matplotlib.use(), no pyplot."""
    import matplotlib

    before = matplotlib.get_backend()
    res = compare("bds3-rsmc-geo", small_image, losses=[0.0], seeds=1, arms=["rvq"], codec=tiny)
    assert len(res.figure().axes) == 2 * 3  # loss models x panels
    assert matplotlib.get_backend() == before


def test_uep_sends_the_plain_sources_when_no_stage_fits_with_its_repairs(tiny, small_image):
    # 64 x 64 px: the tiny codec's 2 stages of 4 x 4 indices fit one 360-byte packet, and stage
    # 1 with its repair would take two: the arm must still send the picture, unprotected.
    image = np.ascontiguousarray(small_image[:64, :64])
    sc = load_scenario("bds3-rsmc-geo", loss_overrides("bernoulli", 0.1))
    code = tiny.encode(image)
    uep = arm_plan("rvq-uep", sc, image, code, (1.0, 0.1, 0.1, 0.1, 0.1), 0.1).plan
    plain = arm_plan("rvq", sc, image, code, (1.0, 0.1, 0.1, 0.1, 0.1), 0.1).plan
    assert uep is not None and plain is not None
    assert uep.messages == plain.messages and len(uep.messages) == 1
