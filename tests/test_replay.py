"""Receiver and replay, end to end on a small image with the shipped model."""

from __future__ import annotations

import csv
import itertools
import json
import sys

import numpy as np
import pytest
import torch

import codec
from satlink.replay import replay

torch.set_num_threads(1)

NO_LOSS = ("channel.loss.model='none'",)
# 66 indices a 100-byte packet: the 128 x 128 test picture's 320 indices take 5 packets.
FIVE_PACKETS = (*NO_LOSS, "packets.size_bytes=100")


@pytest.fixture(scope="module")
def model() -> codec.Codec:
    return codec.default_codec()


def test_lossless_replay_matches_codec_and_never_gets_worse(small_image, model, tmp_path):
    res = replay("bds3-rsmc-geo", small_image, seed=3, out_dir=tmp_path, overrides=NO_LOSS)
    counts = res.summary["counts"]
    assert counts["lost"] == 0 and counts["accepted"] == counts["packets"]
    # One preview per accepted packet, on disk too.
    assert len(res.previews) == counts["accepted"]
    assert len(list((tmp_path / "previews").glob("*.png"))) == counts["accepted"]
    # The final preview is exactly the codec's full decode.
    full = model.decode(model.encode(small_image))
    np.testing.assert_array_equal(res.previews[-1].image, full)
    assert res.summary["time_to_full_quality_s"] == res.previews[-1].t_arrival_s
    # Stage-major with no loss: quality never drops.
    msssim = [p.scores["ms_ssim"] for p in res.previews]
    assert all(b >= a - 1e-6 for a, b in itertools.pairwise(msssim)), msssim
    for name in (
        "summary.json",
        "packets.csv",
        "contact_sheet.png",
        "progressive.gif",
        "quality_vs_packets.png",
        "quality_vs_time.png",
        "timeline.png",
    ):
        assert (tmp_path / name).stat().st_size > 0, name


def test_same_seed_same_outputs_different_seed_differs(small_image, tmp_path):
    runs = [
        replay("geo-burst-arq", small_image, seed=s, out_dir=tmp_path / f"r{i}")
        for i, s in enumerate((5, 5, 6))
    ]
    csvs = [(tmp_path / f"r{i}" / "packets.csv").read_text() for i in range(3)]
    assert csvs[0] == csvs[1]
    assert csvs[0] != csvs[2]
    figures = [
        {
            k: v
            for k, v in json.loads((tmp_path / f"r{i}" / "summary.json").read_text()).items()
            if k != "versions"
        }
        for i in range(2)
    ]
    assert figures[0] == figures[1]
    assert runs[0].summary["counts"] == runs[1].summary["counts"]


def test_packets_csv_joins_trace_and_scores(small_image, tmp_path):
    res = replay(
        "bds3-rsmc-geo",
        small_image,
        seed=1,
        out_dir=tmp_path,
        overrides=("channel.loss.service_loss_p=0.3",),
    )
    with open(tmp_path / "packets.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(res.rows)
    for col in (
        "seq",
        "t_enqueue_s",
        "t_tx_start_s",
        "t_tx_end_s",
        "t_arrival_s",
        "outcome",
        "attempt",
        "channel_state",
        "rx_verdict",
        "preview",
        "psnr_db",
        "ms_ssim",
    ):
        assert col in rows[0], col
    lost = [r for r in rows if r["outcome"] == "lost"]
    assert lost and all(r["t_arrival_s"] == "" and r["preview"] == "" for r in lost)
    scored = [r for r in rows if r["preview"]]
    assert len(scored) == len(res.previews)


def test_fragmented_service_reassembles(small_image):
    res = replay("bds3-gsmc-meo", small_image, seed=0, overrides=NO_LOSS)
    c = res.summary["counts"]
    assert c["wire_messages"] > c["packets"]
    assert len(res.previews) == c["packets"]


def test_unwritable_output_is_a_clear_error(small_image, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="cannot write to output folder"):
        replay("bds3-rsmc-geo", small_image, out_dir=blocker / "sub")


def test_ctrl_c_leaves_valid_files(small_image, model, tmp_path):
    class InterruptingCodec:
        """Delegates to the real codec but raises KeyboardInterrupt on the third decode."""

        def __init__(self, inner):
            self.inner, self.calls = inner, 0

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def decode(self, code, received=None):
            self.calls += 1
            if self.calls == 3:
                raise KeyboardInterrupt
            return self.inner.decode(code, received)

    res = replay(
        "bds3-rsmc-geo",
        small_image,
        out_dir=tmp_path,
        codec=InterruptingCodec(model),
        overrides=FIVE_PACKETS,
    )
    assert res.interrupted
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["previews"] == 2
    from PIL import Image

    frames = sorted((tmp_path / "previews").glob("*.png"))
    assert [f.name for f in frames] == ["001.png", "002.png"]
    for f in frames:
        Image.open(f).verify()
    assert not list(tmp_path.rglob(".*.tmp"))
    with open(tmp_path / "packets.csv") as f:
        assert len(list(csv.DictReader(f))) >= 2


def test_default_image_is_skimage_astronaut_without_importing_skimage_data():
    import subprocess

    from skimage import data

    from satlink.replay import default_image

    assert np.array_equal(default_image(), data.astronaut())
    # The point of reading the file directly: a replay's start-up skips skimage.io and scipy.
    code = (
        "import sys; from satlink.replay import default_image; default_image(); "
        "print('skimage.io' in sys.modules, 'scipy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_reliable_first_stage_tags_every_packet_that_carries_first_stage_indices(
    small_image, model
):
    from satlink.packets import parse_packet
    from satlink.replay import encode_payload
    from satlink.scenario import load_scenario

    # 42 indices a 70-byte packet, 64 a stage: packet 1 ends stage 1 and begins stage 2.
    sc = load_scenario("bds3-rsmc-geo", ["packets.size_bytes=70"])
    plan = encode_payload(small_image, "rvq", sc, codec=model).plan
    assert plan is not None
    stages = [set(parse_packet(m).stages.tolist()) for m in plan.messages]
    assert stages[:2] == [{0}, {0, 1}]
    assert plan.reliable == [0 in s for s in stages] == [True, True] + [False] * (len(stages) - 2)
