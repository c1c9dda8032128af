"""Codec v2 training recipe: one depth per sample, encoder gradient from full depth, latent
norm, diagnostics, the portable training pack, wall-time limits and safe checkpoint loading."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import codec
from codec.checkpoint import CheckpointError, export_weights
from codec.pack import build_pack, load_pack
from codec.quantizer import rotate_onto
from codec.train import (
    TrainConfig,
    Trainer,
    depth_mask,
    latent_diagnostics,
    parse_depth_weights,
    sample_depths,
    stage_weights,
)
from codec.train.cli import main, parse_args

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:80, 0:96]
    for i in range(5):
        base = np.stack([x * 2 + 10 * i, y * 3, (x + y) + 20 * i], -1)
        img = np.clip(base + rng.integers(-25, 25, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"{i}.png")
    return root


def config(data: Path | str, out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = {
        "data": str(data),
        "out": str(out),
        "crop_px": 64,
        "config": '{"num_stages": 3, "codebook_size": 16, "latent_dim": 8, '
        '"enc_channels": [8, 12, 16], "enc_depths": [1, 1, 1], "dec_channels": [16, 12, 8, 8], '
        '"dec_depths": [1, 1, 1, 1], "attn_heads": 2, "latent_norm": true}',
        "val_every": 1000,
        "progress": False,
        "threads": 1,
        "batch_size": 4,
        "kmeans_batches": 2,
    }
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_depths_are_drawn_with_the_progic_weights() -> None:
    gen = torch.Generator().manual_seed(0)
    depths = sample_depths(20000, stage_weights(5, 0.5), gen)
    share = torch.bincount(depths, minlength=6)[1:].float() / len(depths)
    assert torch.allclose(share, torch.tensor([0.125, 0.125, 0.125, 0.125, 0.5]), atol=0.015)
    received = torch.ones(3, 5, 2, 2, dtype=torch.bool)
    kept = depth_mask(received, torch.tensor([1, 3, 5])).flatten(2).all(-1)
    assert kept.sum(1).tolist() == [1, 3, 5]


def test_depth_weights_replace_the_progic_pair_and_are_checked(corpus, tmp_path) -> None:
    gen = torch.Generator().manual_seed(0)
    depths = sample_depths(20000, parse_depth_weights("2,0,1,0,1"), gen)
    share = torch.bincount(depths, minlength=6)[1:].float() / len(depths)
    assert torch.allclose(share, torch.tensor([0.5, 0.0, 0.25, 0.0, 0.25]), atol=0.015)
    args = ["--data", "d", "--out", "o"]
    for bad in ("1,x", "1,-1", "0,0", "1,inf", "nan,1"):
        with pytest.raises(SystemExit):
            parse_args([*args, "--depth-weights", bad])
    assert parse_args([*args, "--depth-weights", "1,1,1,1,4"]).depth_weights == "1,1,1,1,4"
    with pytest.raises(ValueError, match="name 5 depths, the model has 3"):
        Trainer(config(corpus, tmp_path / "run", depth_weights="1,1,1,1,4"))


def test_one_depth_training_learns(corpus, tmp_path) -> None:
    cfg = config(
        corpus,
        tmp_path / "run",
        depth_sampling="one",
        encoder_grad="full",
        lr=3e-3,
        warmup_steps=1,
        erasure_prob=0.0,
        steps=40,
    )
    trainer = Trainer(cfg)
    trainer.kmeans_init()
    losses = [trainer.train_step()["loss"] for _ in range(40)]
    assert np.mean(losses[-8:]) < np.mean(losses[:8])
    stats = trainer.train_step()
    # Per-depth figures exist only for the depths this batch drew.
    assert len(stats["dssim"]) == 3 and any(v is not None for v in stats["dssim"])
    val = trainer.validate()
    assert len(val["val_msssim"]) == 3 and val["latent_participation_ratio"] >= 1.0
    assert all(
        a >= b
        for a, b in zip(
            val["residual_energy_per_stage"], val["residual_energy_per_stage"][1:], strict=False
        )
    )


def test_encoder_learns_only_from_full_depth_when_asked(corpus, tmp_path) -> None:
    trainer = Trainer(config(corpus, tmp_path / "g", encoder_grad="full"))
    trainer.kmeans_init()
    x = trainer.batch()
    for depth, expect_grad in ((1, False), (3, True)):
        trainer.net.zero_grad(set_to_none=True)
        _, _, _, recon = trainer.reconstruct(x, depths=torch.full((len(x),), depth))
        recon.square().mean().backward()
        encoder_grad = trainer.net.stem.weight.grad
        decoder_grad = trainer.net.from_latent.weight.grad
        assert decoder_grad is not None and decoder_grad.abs().sum() > 0
        got = encoder_grad is not None and bool(encoder_grad.abs().sum() > 0)
        assert got is expect_grad


def test_bad_recipe_names_are_refused(corpus, tmp_path) -> None:
    with pytest.raises(ValueError, match="depth_sampling"):
        Trainer(config(corpus, tmp_path / "x", depth_sampling="some"))
    with pytest.raises(ValueError, match="encoder_grad"):
        Trainer(config(corpus, tmp_path / "x", encoder_grad="half"))
    with pytest.raises(ValueError, match="quantizer_grad"):
        Trainer(config(corpus, tmp_path / "x", quantizer_grad="straight"))


def test_rotation_trick_turns_the_gradient() -> None:
    # e = (1, 0) quantized to q = (0, 2): a quarter turn and a doubling. The value is q; the
    # gradient of <out, g> is 2 R^T g, not g as straight-through would give.
    e = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).requires_grad_()
    q = torch.tensor([0.0, 2.0]).view(1, 2, 1, 1)
    out = rotate_onto(e, q)
    assert torch.equal(out, q)
    (out * torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)).sum().backward()
    assert torch.allclose(e.grad.flatten(), torch.tensor([0.0, -2.0]), atol=1e-6)


def test_rotation_trick_decodes_the_same_and_trains_the_encoder(corpus, tmp_path) -> None:
    trainers = {
        g: Trainer(config(corpus, tmp_path / g, quantizer_grad=g)) for g in ("ste", "rotation")
    }
    trainers["rotation"].net.load_state_dict(trainers["ste"].net.state_dict())
    x = trainers["ste"].batch()
    recons, grads = {}, {}
    for g, trainer in trainers.items():
        z = trainer.net.analysis(x).detach()
        trainer.net.rvq.init_kmeans(z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]), seed=0)
        _, _, _, recon = trainer.reconstruct(x, depths=torch.tensor([1, 2, 3, 3]))
        recon.square().mean().backward()
        recons[g], grads[g] = recon.detach(), trainer.net.stem.weight.grad
    assert torch.allclose(recons["ste"], recons["rotation"], atol=1e-5)
    assert grads["rotation"].abs().sum() > 0
    assert not torch.allclose(grads["ste"], grads["rotation"])


def test_participation_ratio_counts_directions() -> None:
    gen = torch.Generator().manual_seed(0)
    iso = torch.randn(4, 16, 32, 32, generator=gen)
    line = torch.randn(4, 1, 32, 32, generator=gen) * torch.ones(1, 16, 1, 1)
    none = torch.zeros(4, 2, 16, 32, 32)
    assert 14 < latent_diagnostics(iso, none)["latent_participation_ratio"] <= 16
    assert latent_diagnostics(line, none)["latent_participation_ratio"] < 1.01
    perfect = torch.stack([iso, torch.zeros_like(iso)], 1)
    assert latent_diagnostics(iso, perfect)["residual_energy_per_stage"] == [0.0, 0.0]


def test_pack_trains_like_the_folder_and_stops_on_wall_time(corpus, tmp_path) -> None:
    info = build_pack(corpus, tmp_path / "pack.npz", max_side_px=96)
    assert (info["train_images"], info["val_images"]) == (4, 1)
    assert all(im.shape == (80, 96, 3) for im in load_pack(tmp_path / "pack.npz", "train"))
    cfg = config(
        tmp_path / "pack.npz",
        tmp_path / "run",
        steps=1000,
        max_wall_s=1e-9,
        export_every=1,
        depth_sampling="one",
    )
    trainer = Trainer(cfg)
    trainer.run()
    # Stopped before its first step, with a checkpoint and an export to show for it.
    assert trainer.step == 0
    assert (tmp_path / "run" / "last.ckpt").is_file()
    exported = sorted((tmp_path / "run").glob("step_*.pt"))
    assert [p.name for p in exported] == ["step_000000.pt"]
    assert codec.load_codec(exported[0]).num_stages == 3


def test_exports_keep_only_the_newest(corpus, tmp_path) -> None:
    cfg = config(
        corpus, tmp_path / "run", steps=5, export_every=1, export_keep=2, depth_sampling="one"
    )
    Trainer(cfg).run()
    assert [p.name for p in sorted((tmp_path / "run").glob("step_*.pt"))] == [
        "step_000004.pt",
        "step_000005.pt",
    ]


class _Payload:
    """Pickles to a call that would create a file: loading must never run it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoints_with_code_in_them_are_refused(corpus, tmp_path, capsys) -> None:
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"model": _Payload(marker), "step": 1}, evil)
    with pytest.raises(CheckpointError, match="could run code"):
        export_weights(evil, tmp_path / "out.pt")
    trainer = Trainer(config(corpus, tmp_path / "run"))
    with pytest.raises(CheckpointError, match="could run code"):
        trainer.load(evil)
    assert not marker.exists()
    # Through the CLI: one line, exit 2, and still nothing ran.
    from satlink.cli import main as satlink_main

    assert satlink_main(["codec", "train", "export", str(evil), str(tmp_path / "o.pt")]) == 2
    assert "could run code" in capsys.readouterr().err
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint"])
def test_broken_checkpoints_get_one_line(tmp_path, content) -> None:
    (tmp_path / "bad.ckpt").write_bytes(content)
    with pytest.raises(CheckpointError, match=r"bad\.ckpt"):
        export_weights(tmp_path / "bad.ckpt", tmp_path / "o.pt")


def test_export_names_the_model(corpus, tmp_path, capsys) -> None:
    cfg = config(corpus, tmp_path / "run", steps=1, depth_sampling="one")
    Trainer(cfg).run()
    main(
        [
            "export",
            str(tmp_path / "run" / "last.ckpt"),
            str(tmp_path / "w.pt"),
            "--name",
            "progic-rvq-v2",
            "--model-id",
            "2",
        ]
    )
    loaded = codec.load_codec(tmp_path / "w.pt")
    assert (loaded.name, loaded.model_id) == ("progic-rvq-v2", 2)


def test_every_training_option_has_help(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(["--help"], prog="satlink codec train")
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: satlink codec train")
    assert "--depth-sampling" in text and "(default 'all')" in text
    with pytest.raises(SystemExit):
        parse_args(["--data", "d", "--out", "o", "--bf16", "maybe"])
    assert "expected true or false" in capsys.readouterr().err


@pytest.mark.parametrize("freeze", ["encoder", "codebooks"])
def test_frozen_parts_do_not_change(corpus, tmp_path, freeze) -> None:
    """--freeze encoder: the analysis and codebooks stay (the indices never change) and the
    decoder learns; --freeze codebooks: only the codebooks stay."""
    from codec.train import ENCODER_MODULES

    trainer = Trainer(config(corpus, tmp_path / "run", steps=3, freeze=freeze))
    trainer.kmeans_init()  # the start of a new model, as a fine-tune's weights would be
    before = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    trainer.run()
    after = trainer.net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert not any(k.startswith("rvq.codebooks") for k in changed)
    assert any(k.startswith("dec_") for k in changed)
    assert any(k.startswith(ENCODER_MODULES) for k in changed) == (freeze == "codebooks")


def test_ema_decay_reaches_the_codebooks(corpus, tmp_path) -> None:
    trainer = Trainer(config(corpus, tmp_path / "run", steps=1, ema_decay=0.999))
    assert trainer.net.rvq.decay == 0.999
    with pytest.raises(ValueError, match="ema_decay must be in"):
        Trainer(config(corpus, tmp_path / "run2", steps=1, ema_decay=1.0))
    with pytest.raises(ValueError, match="lr_floor must be in"):
        Trainer(config(corpus, tmp_path / "run3", steps=1, lr_floor=1.5))


def test_lr_floor_sets_where_the_cosine_ends(corpus, tmp_path) -> None:
    trainer = Trainer(config(corpus, tmp_path / "run", steps=100, warmup_steps=0, lr_floor=0.4))
    assert trainer.lr_at(100) == pytest.approx(0.4 * trainer.cfg.lr)
    held = Trainer(config(corpus, tmp_path / "r2", steps=100, warmup_steps=0, lr_floor=1.0))
    assert held.lr_at(0) == held.lr_at(50) == pytest.approx(held.cfg.lr)


def test_lr_clock_wall_decays_with_the_clock_not_the_step(corpus, tmp_path) -> None:
    cfg = config(corpus, tmp_path / "run", steps=10**6, warmup_steps=0, lr_floor=0.2)
    cfg.lr_clock, cfg.max_wall_s = "wall", 100.0
    trainer = Trainer(cfg)
    trainer.run_started = time.perf_counter()
    assert trainer.lr_at(10**5) == pytest.approx(cfg.lr, rel=1e-3)  # many steps, no time
    trainer.run_started -= 100.0
    assert trainer.lr_at(1) == pytest.approx(0.2 * cfg.lr)  # one step, all the time
    with pytest.raises(ValueError, match="lr_clock 'wall' needs max_wall_s"):
        Trainer(config(corpus, tmp_path / "r2", steps=1, lr_clock="wall"))
    with pytest.raises(ValueError, match="lr_clock must be"):
        Trainer(config(corpus, tmp_path / "r3", steps=1, lr_clock="epochs"))


def test_freeze_names_an_unknown_part(capsys) -> None:
    from codec.train.cli import parse_args

    with pytest.raises(SystemExit) as info:
        parse_args(["--data", "d", "--out", "o", "--freeze", "encoder,decoder"])
    assert info.value.code == 2
    assert "unknown parts ['decoder']" in capsys.readouterr().err


def test_half_export_loads_into_the_fp32_model(corpus, tmp_path) -> None:
    cfg = config(corpus, tmp_path / "run", steps=1, depth_sampling="one")
    Trainer(cfg).run()
    full = export_weights(tmp_path / "run" / "last.ckpt", tmp_path / "f.pt")
    half = export_weights(tmp_path / "run" / "last.ckpt", tmp_path / "h.pt", half=True)
    assert (full["stored_dtype"], half["stored_dtype"]) == ("float32", "float16")
    a, b = codec.load_codec(tmp_path / "f.pt"), codec.load_codec(tmp_path / "h.pt")
    assert next(b.net.parameters()).dtype == torch.float32
    img = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    diff = np.abs(a.decode(a.encode(img)).astype(int) - b.decode(b.encode(img)).astype(int))
    assert diff.mean() < 2.0


def test_validate_a_weight_file(corpus, tmp_path, capsys) -> None:
    import json

    cfg = config(corpus, tmp_path / "run", steps=1, depth_sampling="one")
    Trainer(cfg).run()
    export_weights(tmp_path / "run" / "last.ckpt", tmp_path / "w.pt")
    main(["validate", str(tmp_path / "w.pt"), "--data", str(corpus), "--crop-px", "64"])
    figures = json.loads(capsys.readouterr().out)
    assert len(figures["val_msssim"]) == 3 and figures["latent_participation_ratio"] >= 1


def test_export_relabels_a_step_export(corpus, tmp_path) -> None:
    cfg = config(corpus, tmp_path / "run", steps=2, export_every=2, depth_sampling="one")
    Trainer(cfg).run()
    step = tmp_path / "run" / "step_000002.pt"
    meta = export_weights(step, tmp_path / "v2.pt", model_id=2, name="progic-rvq-v2", half=True)
    assert (meta["model_id"], meta["name"], meta["step"]) == (2, "progic-rvq-v2", 2)
    a, b = codec.load_codec(step), codec.load_codec(tmp_path / "v2.pt")
    assert (b.name, b.model_id) == ("progic-rvq-v2", 2)
    for (k, va), vb in zip(a.net.state_dict().items(), b.net.state_dict().values(), strict=True):
        assert torch.allclose(va, vb, atol=1e-2, rtol=1e-3), k


def test_a_fine_tune_takes_the_shape_of_its_weights(corpus, tmp_path) -> None:
    # No --config: the model is built as the weights were (here: a tiny one with latent_norm),
    # not the default shape, which would refuse to load them.
    Trainer(config(corpus, tmp_path / "run", steps=1, export_every=1)).run()
    start = tmp_path / "run" / "step_000001.pt"
    base = ["--data", str(corpus), "--crop-px", "64", "--batch-size", "2", "--threads", "1"]
    main([*base, "--out", str(tmp_path / "ft"), "--init-weights", str(start), "--steps", "1"])
    main(["export", str(tmp_path / "ft" / "last.ckpt"), str(tmp_path / "ft.pt")])
    tuned = codec.load_codec(tmp_path / "ft.pt")
    assert tuned.config == codec.load_codec(start).config and tuned.config.latent_norm


def test_encoder_block_norm_is_an_option_that_old_weights_do_not_see() -> None:
    from dataclasses import replace

    from codec.model import CodecConfig, ProgressiveCodec

    plain = ProgressiveCodec(CodecConfig.tiny())
    normed = ProgressiveCodec(replace(CodecConfig.tiny(), enc_block_norm=True))
    extra = set(normed.state_dict()) - set(plain.state_dict())
    assert extra and all(".norm." in k and k.startswith("enc_levels") for k in extra)
    assert CodecConfig.from_dict(replace(CodecConfig.tiny(), enc_block_norm=True).to_dict())
    x = torch.rand(1, 3, 32, 32)
    assert normed.decode_indices(normed.encode_indices(x)).shape == x.shape


def test_factorized_lookup_trains_its_codes_by_gradient_and_exports(corpus, tmp_path) -> None:
    # DAC's factorized, l2-normalised lookup (CodecConfig.code_dim): no EMA, no revival; the
    # codes, both projections and the encoder move by gradient, and a packed export decodes
    # what the trainer's network decodes.
    tiny = json.loads(config(corpus, tmp_path).config)
    cfg = config(corpus, tmp_path / "dac", steps=6, lr=3e-3, warmup_steps=1, export_every=6)
    cfg = replace(cfg, config=json.dumps({**tiny, "code_dim": 4}), depth_sampling="one")
    trainer = Trainer(cfg)
    assert not trainer.net.rvq.uses_ema and trainer.net.rvq.codebooks.requires_grad
    trainer.kmeans_init()
    start = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    stats = [trainer.train_step() for _ in range(6)]
    assert all(np.isfinite(st["loss"]) and st["revived"] == [0, 0, 0] for st in stats)
    moved = {k for k, v in trainer.net.state_dict().items() if not torch.equal(v, start[k])}
    assert {"rvq.codebooks", "rvq.in_proj", "rvq.out_proj", "stem.weight"} <= moved
    assert float(trainer.net.rvq.code_loss.detach()) > 0
    trainer.save()
    export_weights(tmp_path / "dac" / "last.ckpt", tmp_path / "dac.pt", half=True, pack=True)
    loaded = codec.load_codec(tmp_path / "dac.pt")
    assert loaded.config.code_dim == 4
    img = np.random.default_rng(3).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    indices = loaded.encode(img)
    assert loaded.decode(indices).shape == img.shape
    with torch.no_grad():  # the lookup gives back exactly the codewords the quantizer chose
        z = loaded.net.analysis(torch.rand(1, 3, 32, 32))
        idx, cw = loaded.net.quantize(z)
        assert torch.allclose(loaded.net.rvq.lookup(idx), cw, atol=1e-6)


def test_freezing_codebooks_holds_a_factorized_quantizer(corpus, tmp_path) -> None:
    tiny = json.loads(config(corpus, tmp_path).config)
    cfg = config(corpus, tmp_path / "f", steps=2, freeze="codebooks", depth_sampling="one")
    trainer = Trainer(replace(cfg, config=json.dumps({**tiny, "code_dim": 4})))
    trainer.kmeans_init()
    before = {k: v.clone() for k, v in trainer.net.rvq.state_dict().items()}
    trainer.train_step()
    trainer.train_step()
    assert all(torch.equal(v, before[k]) for k, v in trainer.net.rvq.state_dict().items())


def test_average_of_exports(corpus, tmp_path) -> None:
    from codec.checkpoint import CheckpointError, average_weights

    Trainer(config(corpus, tmp_path / "run", steps=3, export_every=1, export_keep=3)).run()
    files = sorted((tmp_path / "run").glob("step_*.pt"))
    meta = average_weights(files, tmp_path / "avg.pt")
    assert meta["averaged_steps"] == [1, 2, 3] and meta["step"] == 3
    blobs = [torch.load(f, weights_only=True)["state_dict"] for f in files]
    avg = torch.load(tmp_path / "avg.pt", weights_only=True)["state_dict"]
    key = "stem.weight"
    assert torch.allclose(avg[key], torch.stack([b[key] for b in blobs]).mean(0))
    assert torch.equal(avg["rvq.codebooks"], blobs[-1]["rvq.codebooks"])  # never averaged
    assert codec.load_codec(tmp_path / "avg.pt").num_stages == 3
    main(["average", str(tmp_path / "cli.pt"), *map(str, files), "--half"])
    assert codec.load_codec(tmp_path / "cli.pt").num_stages == 3
    # A file written before a CodecConfig field existed averages with one written after.
    older = torch.load(files[0], weights_only=True)
    del older["config"]["code_dim"]
    torch.save(older, tmp_path / "older.pt")
    assert average_weights([tmp_path / "older.pt", files[1]], tmp_path / "mixed.pt")["step"] == 2
    with pytest.raises(CheckpointError, match="not exported"):
        average_weights([tmp_path / "run" / "last.ckpt"], tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="no weight file at"):
        average_weights([tmp_path / "absent.pt"], tmp_path / "x.pt")


def test_a_packed_export_loads_the_same_tensors_and_pictures(corpus, tmp_path) -> None:
    cfg = config(corpus, tmp_path / "run", steps=2, export_every=2, depth_sampling="one")
    Trainer(cfg).run()
    step = tmp_path / "run" / "step_000002.pt"
    main(["export", str(step), str(tmp_path / "h.pt"), "--half"])
    main(["export", str(step), str(tmp_path / "p.pt"), "--half", "--pack"])
    assert "packed" in torch.load(tmp_path / "p.pt", weights_only=True)
    a, b = codec.load_codec(tmp_path / "h.pt"), codec.load_codec(tmp_path / "p.pt")
    sa, sb = a.net.state_dict(), b.net.state_dict()
    left_out = {"rvq.ema_sum", "rvq.steps_unused"}
    assert [k for k in sa if not torch.equal(sa[k], sb[k])] == sorted(left_out)
    # What it leaves out is re-derived from the codebooks and counts, close to what it was.
    assert torch.allclose(sa["rvq.ema_sum"], sb["rvq.ema_sum"], rtol=1e-2, atol=1e-3)
    img = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    code = a.encode(img)
    assert np.array_equal(code.indices, b.encode(img).indices)
    assert np.array_equal(a.decode(code), b.decode(code))
    # A fine-tune starts from it, and relabelling keeps it loadable.
    base = ["--data", str(corpus), "--crop-px", "64", "--batch-size", "2", "--threads", "1"]
    ft = ["--out", str(tmp_path / "ft"), "--init-weights", str(tmp_path / "p.pt"), "--steps", "1"]
    main([*base, *ft])
    meta = export_weights(tmp_path / "p.pt", tmp_path / "r.pt", model_id=7, name="r", pack=True)
    assert meta["model_id"] == 7 and codec.load_codec(tmp_path / "r.pt").model_id == 7


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda b: b.update(packed=b["packed"][: len(b["packed"]) // 2].clone()), "damaged"),
        (lambda b: b.update(packing="lzma-9"), "unknown tensor packing"),
        (lambda b: b["layout"][0].__setitem__(2, "object"), "unknown dtype"),
        (lambda b: b["layout"].pop(), "longer than their layout"),
    ],
)
def test_a_damaged_packed_file_is_refused_by_name(corpus, tmp_path, damage, why) -> None:
    Trainer(config(corpus, tmp_path / "run", steps=1, export_every=1)).run()
    export_weights(tmp_path / "run" / "step_000001.pt", tmp_path / "p.pt", pack=True)
    blob = torch.load(tmp_path / "p.pt", weights_only=True)
    damage(blob)
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(codec.zoo.ModelNotFoundError, match=why) as err:
        codec.load_codec(tmp_path / "bad.pt")
    assert "\n" not in str(err.value)


def test_a_delta_packed_release_loads_bit_for_bit_and_needs_its_base(corpus, tmp_path) -> None:
    # An older release stored as XOR of a newer one: the same tensors come back, wherever the
    # pair is copied, and a missing, changed or looping base is refused in one line.
    Trainer(config(corpus, tmp_path / "run", steps=2, export_every=1, export_keep=2)).run()
    old, new = tmp_path / "run" / "step_000001.pt", tmp_path / "run" / "step_000002.pt"
    main(["export", str(new), str(tmp_path / "new.pt"), "--half", "--pack"])
    main(["export", str(old), str(tmp_path / "full.pt"), "--half", "--pack"])
    args = ["--half", "--delta-from", str(tmp_path / "new.pt")]
    main(["export", str(old), str(tmp_path / "old.pt"), "--model-id", "3", *args])
    blob = torch.load(tmp_path / "old.pt", weights_only=True)
    assert blob["packing"] == "byteplanes-xor-lzma-1" and blob["base"] == "new"
    full, delta = codec.load_codec(tmp_path / "full.pt"), codec.load_codec(tmp_path / "old.pt")
    assert delta.model_id == 3
    sf, sd = full.net.state_dict(), delta.net.state_dict()
    assert all(torch.equal(sf[k], sd[k]) for k in sf)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for name in ("old.pt", "new.pt"):
        (moved / name).write_bytes((tmp_path / name).read_bytes())
    assert codec.load_codec(moved / "old.pt").model_id == 3
    (moved / "new.pt").unlink()
    with pytest.raises(codec.zoo.ModelNotFoundError, match=r"difference from new\.pt") as err:
        codec.load_codec(moved / "old.pt")
    assert "\n" not in str(err.value)
    (moved / "new.pt").write_bytes((tmp_path / "new.pt").read_bytes()[:300])  # cut short
    with pytest.raises(codec.zoo.ModelNotFoundError, match=r"its base .*new\.pt cannot be read"):
        codec.load_codec(moved / "old.pt")
    (moved / "new.pt").write_bytes((tmp_path / "full.pt").read_bytes())  # another release
    with pytest.raises(codec.zoo.ModelNotFoundError, match="checksum differs"):
        codec.load_codec(moved / "old.pt")
    blob["base"] = "old"  # names itself: a loop
    torch.save(blob, moved / "old.pt")
    with pytest.raises(codec.zoo.ModelNotFoundError, match="deeper than 8"):
        codec.load_codec(moved / "old.pt")


def test_crops_are_the_same_on_any_device_for_a_seed() -> None:
    from codec.data import device_crops, random_crops

    rng = np.random.default_rng(5)
    images = [rng.integers(0, 255, (70 + 7 * i, 90 - 5 * i, 3), dtype=np.uint8) for i in range(4)]
    on_cpu = random_crops(images, 16, 32, np.random.default_rng(9))
    held = device_crops([torch.from_numpy(im) for im in images], 16, 32, np.random.default_rng(9))
    assert torch.equal(on_cpu, held)
    assert on_cpu.shape == (16, 3, 32, 32)
    assert not torch.equal(on_cpu, random_crops(images, 16, 32, np.random.default_rng(10)))


def test_init_partial_takes_what_fits_and_keeps_the_indices(corpus, tmp_path, capsys) -> None:
    donor = Trainer(config(corpus, tmp_path / "donor", steps=2, export_every=2, export_keep=1))
    donor.run()
    weights = next((tmp_path / "donor").glob("step_*.pt"))
    slim = json.loads(donor.cfg.config)
    slim.update(dec_channels=[16, 12, 6, 4], dec_depths=[1, 1, 1, 1])
    with pytest.raises(RuntimeError, match="size mismatch"):  # without the flag: refused
        Trainer(config(corpus, tmp_path / "a", config=json.dumps(slim))).init_from_weights(weights)
    trainer = Trainer(
        config(corpus, tmp_path / "b", config=json.dumps(slim), init_partial=True, freeze="encoder")
    )
    trainer.init_from_weights(weights)
    assert "start fresh" in capsys.readouterr().err
    assert trainer.kmeans_done and trainer.prior_steps == 0
    own, given = trainer.net.state_dict(), donor.net.state_dict()
    same = [k for k in own if k in given and own[k].shape == given[k].shape]
    assert all(torch.equal(own[k], given[k]) for k in same)
    assert len(same) < len(own)  # the narrowed levels start fresh
    x = donor.batch()
    assert torch.equal(trainer.net.encode_indices(x), donor.net.encode_indices(x))


def test_a_deeper_decoder_keeps_every_borrowed_block_and_its_modulation(corpus, tmp_path) -> None:
    from codec.model import film_columns

    donor = Trainer(config(corpus, tmp_path / "donor", steps=3, export_every=3, export_keep=1))
    donor.run()
    weights = next((tmp_path / "donor").glob("step_*.pt"))
    deeper = json.loads(donor.cfg.config)
    deeper.update(dec_depths=[1, 2, 1, 1])  # one new block at the second level
    with pytest.raises(ValueError, match="--freeze borrowed needs"):
        Trainer(config(corpus, tmp_path / "a", config=json.dumps(deeper), freeze="borrowed"))
    with pytest.raises(SystemExit) as exc:  # the command line says so in one line, exit 2
        parse_args(["--data", str(corpus), "--out", str(tmp_path / "a"), "--freeze", "borrowed"])
    assert exc.value.code == 2
    kw = dict(config=json.dumps(deeper), init_partial=True, freeze="borrowed", steps=2)
    trainer = Trainer(config(corpus, tmp_path / "b", **kw))
    trainer.init_from_weights(weights)
    film, given = trainer.net.stage_film.weight.detach(), donor.net.stage_film.weight.detach()
    assert given.abs().sum() > 0  # the donor learnt some modulation
    old, new = film_columns(donor.model_cfg), film_columns(trainer.model_cfg)
    for block, (start, width) in new.items():
        if block == "dec_levels.1.1":  # the new block: no modulation yet
            assert not film[:, start : start + width].any()
        else:
            src = old[block][0]
            assert torch.equal(film[:, start : start + width], given[:, src : src + width])
    params = trainer.net.named_parameters()
    fixed = {n: p.detach().clone() for n, p in params if not p.requires_grad}
    assert "dec_levels.1.0.pw1.weight" in fixed and "dec_levels.1.1.pw1.weight" not in fixed
    learnt = trainer.net.dec_levels[1][1].pw1.weight.detach().clone()
    film = film.clone()
    trainer.run()
    now = dict(trainer.net.named_parameters())
    assert all(torch.equal(now[n], v) for n, v in fixed.items())
    assert not torch.equal(now["dec_levels.1.1.pw1.weight"], learnt)
    # The modulation table is shared: the borrowed blocks' columns stay, the new block's learn.
    start, width = new["dec_levels.1.1"]
    kept = torch.ones(film.shape[1], dtype=torch.bool)
    kept[start : start + width] = False
    assert torch.equal(now["stage_film.weight"][:, kept], film[:, kept])
    assert not torch.equal(now["stage_film.weight"][:, ~kept], film[:, ~kept])
    resumed = Trainer(config(corpus, tmp_path / "b", **kw))  # a resumed run stays frozen
    resumed.load(tmp_path / "b" / "last.ckpt")
    assert {n for n, p in resumed.net.named_parameters() if not p.requires_grad} == set(fixed)
    assert "codebooks" in resumed.frozen
    assert torch.equal(resumed.film_kept, kept)


def test_module_entry_reports_a_bad_file_in_one_line(tmp_path):
    """`python -m codec.train` answers as `satlink codec train` does: one line, exit 2."""
    import subprocess

    for args in (
        ["average", "out.pt", "missing.pt"],
        ["export", "missing.ckpt", "out.pt"],
        ["--init-weights", "missing-model", "--data", ".", "--out", "run"],
    ):
        run = subprocess.run(
            [sys.executable, "-m", "codec.train", *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode == 2, run.stderr
        assert "Traceback" not in run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("python -m codec.train: error: ")
        assert "missing" in lines[0]
        assert not (tmp_path / "out.pt").exists()
