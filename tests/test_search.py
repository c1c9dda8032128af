"""Beam search for RVQ indices (``codec.search``, ``Codec.encode(beam_width=W)``)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch
from skimage import data

import codec.search as search
from codec import CodecInputError, default_codec
from codec.metrics import ms_ssim_batch
from codec.model import CodecConfig, ProgressiveCodec
from codec.search import beam_indices, depth_weights

torch.set_num_threads(1)


def small_net(stages: int, codes: int) -> ProgressiveCodec:
    cfg = dataclasses.replace(CodecConfig.tiny(), num_stages=stages, codebook_size=codes)
    torch.manual_seed(0)
    net = ProgressiveCodec(cfg).eval()
    net.rvq.codebooks.normal_()
    return net


def path_cost(net: ProgressiveCodec, z: torch.Tensor, idx: torch.Tensor, w) -> torch.Tensor:
    """sum_k w_k ||residual after k stages||^2 per latent vector, for indices ``[1, S, h, w]``."""
    res = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    flat = idx[0].reshape(idx.shape[1], -1)
    cost = torch.zeros(len(res))
    for k in range(idx.shape[1]):
        res = res - net.rvq.codebooks[k][flat[k]]
        cost += w[k] * (res * res).sum(1)
    return cost


def test_width_one_is_the_quantizer() -> None:
    net = small_net(3, 16)
    z = torch.randn(2, 8, 5, 7)
    assert torch.equal(beam_indices(net, z, 1), net.quantize(z)[0])


def test_a_beam_as_wide_as_every_path_finds_the_best_one() -> None:
    # 3 stages of 4 codes: 64 paths, all kept at width 64, so the beam must equal brute force.
    net = small_net(3, 4)
    z = torch.randn(1, 8, 3, 4)
    w = (3.0, 1.0, 2.0)
    got = path_cost(net, z, beam_indices(net, z, 64, w), w)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 8)
    best = torch.full((len(flat),), float("inf"))
    for path in itertools.product(range(4), repeat=3):
        p = torch.tensor(path)[None, :, None, None].expand(1, 3, 3, 4)
        best = torch.minimum(best, path_cost(net, z, p, w))
    assert torch.allclose(got, best, rtol=1e-5, atol=1e-5)


def test_a_wider_beam_scores_better_than_the_nearest_codes() -> None:
    net = small_net(5, 16)
    z = torch.randn(1, 8, 8, 8) * 2
    w = depth_weights(5)
    greedy = path_cost(net, z, beam_indices(net, z, 1), w)
    beam = path_cost(net, z, beam_indices(net, z, 8), w)
    assert beam.sum() < greedy.sum() and (beam <= greedy + 1e-4).float().mean() > 0.9


def test_a_factorized_quantizer_is_searched_in_the_latent_space() -> None:
    cfg = dataclasses.replace(CodecConfig.tiny(), num_stages=3, code_dim=4)
    net = ProgressiveCodec(cfg).eval()
    z = torch.randn(1, 8, 3, 3)
    idx = beam_indices(net, z, 4)
    assert idx.shape == (1, 3, 3, 3) and int(idx.max()) < cfg.codebook_size
    assert net.decode_indices(idx).shape == (1, 3, 48, 48)


def test_blocks_do_not_change_the_result(monkeypatch) -> None:
    net = small_net(3, 16)
    z = torch.randn(2, 8, 6, 5)
    whole = beam_indices(net, z, 4)
    monkeypatch.setattr(search, "_BLOCK_VECTORS", 7)  # 60 vectors in 9 uneven blocks
    assert torch.equal(beam_indices(net, z, 4), whole)


@pytest.mark.parametrize(("width", "weights"), [(0, None), (65, None), (4, (1.0, 2.0))])
def test_bad_width_or_weights_are_refused(width, weights) -> None:
    with pytest.raises(ValueError, match=r"beam width|depth weights"):
        beam_indices(small_net(3, 16), torch.randn(1, 8, 2, 2), width, weights)


def test_encode_with_a_beam_is_deterministic_and_lifts_the_later_stages() -> None:
    codec = default_codec()
    photo = np.ascontiguousarray(data.astronaut()[40:232, 150:342])
    base = codec.encode(photo)
    a, b = codec.encode(photo, beam_width=8), codec.encode(photo, beam_width=8)
    assert np.array_equal(a.indices, b.indices) and a.indices.shape == base.indices.shape
    previews = [
        np.stack(codec.decode_batch(code, [code.stage_mask(k) for k in range(1, 6)]))
        for code in (base, a)
    ]
    gain = ms_ssim_batch(photo, previews[1]) - ms_ssim_batch(photo, previews[0])
    # On validation: -0.0001 at one stage, +0.0006 to +0.0017 at two to five (model card).
    assert gain[4] > 0 and gain[1:].mean() > 0, gain


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"beam_width": 0}, "beam_width must be in 1..64"),
        ({"beam_width": 2.0}, "beam_width must be an integer"),
        ({"beam_width": True}, "beam_width must be an integer"),
        ({"beam_width": 8, "effort": 2}, "needs effort 0"),
    ],
)
def test_bad_beam_is_refused_by_name(kwargs, match) -> None:
    with pytest.raises(CodecInputError, match=match):
        default_codec().encode(np.zeros((32, 32, 3), np.uint8), **kwargs)


def test_beam_reaches_the_packets_through_cli_sweep_and_replay(tmp_path, capsys) -> None:
    from PIL import Image

    from satlink.cli import main
    from satlink.replay import replay
    from satlink.sweep import SweepError, sweep

    small = np.ascontiguousarray(data.astronaut()[100:164, 200:296])
    Image.fromarray(small).save(tmp_path / "p.png")
    args = ["encode", str(tmp_path / "p.png"), "--out"]
    assert main([*args, str(tmp_path / "k"), "--beam-width", "8"]) == 0
    assert main([*args, str(tmp_path / "n"), "--beam-width", "8", "--effort", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "beam_width 8 needs effort 0" in err[0]
    assert not (tmp_path / "n").exists()
    swept = sweep("bds3-rsmc-geo", images=small, seeds=1, workers=0, beam_width=8, plots=False)
    plain = sweep("bds3-rsmc-geo", images=small, seeds=1, workers=0, plots=False)
    rep = swept.replications[0]
    replayed = replay("bds3-rsmc-geo", small, seed=rep["seed"], beam_width=8, keep_images=False)
    assert rep["final_ms_ssim"] == replayed.summary["final_ms_ssim"]
    assert replayed.summary["payload"]["beam_width"] == 8
    assert rep["key"] != plain.replications[0]["key"]  # the beam is part of a replication's key
    assert swept.stats["beam_width"] == 8 and plain.stats["beam_width"] == 1
    with pytest.raises(SweepError, match="needs effort 0"):
        sweep("bds3-rsmc-geo", images=small, seeds=1, workers=0, beam_width=8, effort=1)


def test_training_can_quantize_with_the_beam(tmp_path) -> None:
    from PIL import Image

    from codec.train import TrainConfig, Trainer

    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
    base = {"data": str(tmp_path), "crop_px": 64, "config": "tiny", "progress": False}
    base |= {"val_every": 1000, "threads": 1, "batch_size": 2, "depth_sampling": "one"}
    trainer = Trainer(TrainConfig(out=str(tmp_path / "o"), beam_width=4, beam_share=1.0, **base))
    trainer.kmeans_init()
    x = trainer.batch()
    z, indices, codewords, _ = trainer.reconstruct(x, beam=True)
    assert torch.equal(indices, beam_indices(trainer.net, z, 4))
    assert torch.equal(codewords, trainer.net.rvq.lookup(indices))
    before = [p.detach().clone() for p in trainer.net.parameters()]
    stats = trainer.train_step()
    assert np.isfinite(stats["loss"])
    assert any(not torch.equal(a, p) for a, p in zip(before, trainer.net.parameters(), strict=True))
    for bad in ({"beam_width": 0}, {"beam_width": 65}, {"beam_share": 1.5}):
        with pytest.raises(ValueError, match=r"beam_width must be in 1\.\.64 and beam_share"):
            Trainer(TrainConfig(out=str(tmp_path / "bad"), **base, **bad))


def test_codec_eval_refuses_a_bad_search_before_making_its_folder(tmp_path) -> None:
    from PIL import Image

    from codec.eval import EvalError, run_eval

    Image.fromarray(data.astronaut()[:64, :64]).save(tmp_path / "a.png")
    out = tmp_path / "new" / "r.json"
    with pytest.raises(EvalError, match=r"beam_width must be in 1\.\.64, got 65"):
        run_eval(tmp_path, out, codecs="rvq", beam_width=65, progress=False)
    assert not out.parent.exists()
