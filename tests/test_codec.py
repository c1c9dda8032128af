"""Codec network, inference API and training, on the tiny configuration and the shipped model."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import codec
from codec import Codec, CodecConfig, CodecInputError, ProgressiveCode
from codec.checkpoint import export_weights
from codec.model import fill_missing
from codec.quantizer import FactorizedRVQ, ResidualVQ
from codec.train import TrainConfig, Trainer, depth_masks, stage_weights

torch.set_num_threads(1)


def gradient_image(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack(
        [x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 255 // max(h + w - 2, 1)], -1
    ).astype(np.uint8)


def test_shapes_and_dtypes(tiny: Codec) -> None:
    code = tiny.encode(gradient_image(40, 72))
    assert code.indices.dtype == np.uint16
    assert code.indices.shape == (2, 3, 5)  # ceil(40/16), ceil(72/16)
    assert code.image_size == (40, 72)
    assert code.bits_per_index == 4 and code.model_id == 999
    out = tiny.decode(code)
    assert out.dtype == np.uint8 and out.shape == (40, 72, 3)


@pytest.mark.parametrize("size", [(16, 16), (17, 31), (33, 16), (100, 63)])
def test_any_size_from_16_px(tiny: Codec, size: tuple[int, int]) -> None:
    code = tiny.encode(gradient_image(*size))
    assert tiny.decode(code).shape == (*size, 3)


def test_every_stage_prefix_decodes(tiny: Codec) -> None:
    code = tiny.encode(gradient_image(48, 48))
    outs = tiny.decode_batch(code, [code.stage_mask(k) for k in range(code.num_stages + 1)])
    assert len(outs) == code.num_stages + 1
    assert all(o.shape == (48, 48, 3) for o in outs)


def test_batch_decode_matches_single(tiny: Codec) -> None:
    code = tiny.encode(gradient_image(32, 48))
    masks = [code.stage_mask(1), code.full_mask()]
    batch = tiny.decode_batch(code, masks)
    for m, b in zip(masks, batch, strict=True):
        np.testing.assert_array_equal(tiny.decode(code, m), b)


def test_random_erasure_masks_never_crash(tiny: Codec) -> None:
    code = tiny.encode(gradient_image(64, 80))
    rng = np.random.default_rng(0)
    for rate in (0.0, 0.3, 0.9, 1.0):
        mask = rng.random(code.indices.shape) >= rate
        out = tiny.decode(code, mask)
        assert out.shape == (64, 80, 3)


def test_deterministic_indices(tiny: Codec) -> None:
    img = gradient_image(64, 64)
    a, b = tiny.encode(img), tiny.encode(img.copy())
    np.testing.assert_array_equal(a.indices, b.indices)


def test_greyscale_and_rgba_are_converted(tiny: Codec) -> None:
    grey = gradient_image(32, 32)[..., 0]
    assert tiny.encode(grey).indices.shape == (2, 2, 2)
    rgba = np.dstack([gradient_image(32, 32), np.full((32, 32), 128, np.uint8)])
    assert tiny.encode(rgba).indices.shape == (2, 2, 2)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    np.testing.assert_array_equal(codec.load_image(buf.getvalue()), codec.load_image(rgba))
    # Fully transparent pixels become white, not black.
    clear = np.zeros((16, 16, 4), np.uint8)
    assert codec.load_image(clear).min() == 255


def test_bad_inputs_get_clear_errors(tiny: Codec, tmp_path) -> None:
    with pytest.raises(CodecInputError, match="at least 16"):
        tiny.encode(gradient_image(15, 64))
    small = Codec(tiny.net, 999, max_pixels=1000)
    with pytest.raises(CodecInputError, match="over the limit"):
        small.encode(gradient_image(64, 64))
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(CodecInputError, match="cannot read image"):
        tiny.encode(bad)
    with pytest.raises(CodecInputError, match="not found"):
        tiny.encode(tmp_path / "missing.png")
    with pytest.raises(CodecInputError, match="NaN"):
        tiny.encode(np.full((32, 32, 3), np.nan, np.float32))
    with pytest.raises(CodecInputError, match="must be H"):
        tiny.encode(np.zeros((32, 32, 5), np.uint8))


def test_bad_codes_and_masks_get_clear_errors(tiny: Codec) -> None:
    code = tiny.encode(gradient_image(32, 32))
    with pytest.raises(CodecInputError, match="model 7"):
        tiny.decode(ProgressiveCode(code.indices, code.image_size, 4, 7))
    with pytest.raises(CodecInputError, match="shape"):
        tiny.decode(ProgressiveCode(code.indices[:, :1], code.image_size, 4, 999))
    with pytest.raises(CodecInputError, match="received mask has shape"):
        tiny.decode(code, np.ones((1, 2, 2), bool))
    with pytest.raises(CodecInputError, match="boolean"):
        tiny.decode(code, np.ones(code.indices.shape, np.uint8))
    with pytest.raises(ValueError, match="indices must lie"):
        ProgressiveCode(np.full((2, 2, 2), 16), (32, 32), 4, 999)


def test_missing_stage1_is_filled_from_neighbours() -> None:
    values = torch.zeros(1, 2, 3, 3)
    values[0, :, 0, 0] = 4.0
    known = torch.zeros(1, 3, 3, dtype=torch.bool)
    known[0, 0, 0] = True
    filled = fill_missing(values, known)
    assert torch.allclose(filled, torch.full_like(filled, 4.0))
    # Nothing known at all: stays zero rather than inventing values.
    assert fill_missing(values, torch.zeros_like(known)).abs().sum() == 0


def test_rvq_refines_with_every_stage() -> None:
    torch.manual_seed(0)
    rvq = ResidualVQ(num_stages=4, codebook_size=32, dim=4)
    z = torch.randn(2000, 4)
    rvq.init_kmeans(z)
    _idx, cw = rvq.quantize(z)
    errors = [(z - cw[: k + 1].sum(0)).pow(2).mean().item() for k in range(4)]
    assert all(a > b for a, b in itertools.pairwise(errors))


@pytest.mark.parametrize("factorized", [False, True])
def test_one_stage_at_a_time_is_the_quantizer(factorized) -> None:
    # The encoder-side refinement picks codes stage by stage through stage_code; with nothing
    # refined it must give exactly what quantize gives, for both quantizers.
    torch.manual_seed(0)
    rvq = FactorizedRVQ(3, 32, 8, 4) if factorized else ResidualVQ(3, 32, 8)
    z = torch.randn(500, 8)
    rvq.init_kmeans(z)
    with torch.no_grad():
        idx, cw = rvq.quantize(z)
        residual = z
        for s in range(3):
            got_idx, got_cw = rvq.stage_code(s, residual)
            assert torch.equal(got_idx, idx[s]) and torch.allclose(got_cw, cw[s], atol=1e-6)
            residual = residual - got_cw


def test_stage_weighting_matches_progic() -> None:
    w = stage_weights(5, 0.5)
    assert torch.allclose(w, torch.tensor([0.125, 0.125, 0.125, 0.125, 0.5]))
    masks = depth_masks(torch.ones(1, 3, 1, 1, dtype=torch.bool))
    assert masks[:, :, 0, 0].tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(0)
    for i in range(4):
        base = gradient_image(96, 96).astype(np.int16)
        noise = rng.integers(-20, 20, base.shape)
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(root / f"{i}.png")
    return root


def tiny_train_config(data: Path, out: Path, **kw: object) -> TrainConfig:
    """The tiny model on 64-px crops, one thread, no progress bar or validation."""
    base: dict[str, object] = {
        "data": str(data),
        "out": str(out),
        "crop_px": 64,
        "config": "tiny",
        "val_every": 1000,
        "progress": False,
        "threads": 1,
    }
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("bf16", [False, True])
def test_tiny_config_trains_and_loss_drops(train_dir, tmp_path, bf16) -> None:
    cfg = tiny_train_config(
        train_dir,
        tmp_path / "run",
        bf16=bf16,
        steps=30,
        batch_size=4,
        lr=3e-3,
        warmup_steps=1,
        kmeans_batches=2,
        erasure_prob=0.0,
    )
    trainer = Trainer(cfg)
    trainer.kmeans_init()
    losses = [trainer.train_step()["loss"] for _ in range(30)]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    # Under bf16 autocast the quantizer still sees, and returns, fp32.
    z, _, codewords, recon = trainer.reconstruct(trainer.batch())
    assert z.dtype == codewords.dtype == recon.dtype == torch.float32
    trainer.save()
    # Resume continues from the saved step.
    resumed = Trainer(cfg)
    resumed.load(tmp_path / "run" / "last.ckpt")
    assert resumed.step == 30
    # Export loads with weights_only=True and decodes.
    dest = tmp_path / "tiny.pt"
    meta = export_weights(tmp_path / "run" / "last.ckpt", dest, model_id=998, name="tiny")
    assert meta["step"] == 30
    loaded = codec.load_codec(dest)
    assert loaded.model_id == 998
    img = gradient_image(48, 48)
    assert loaded.decode(loaded.encode(img)).shape == (48, 48, 3)
    # A fine-tune from exported weights restarts its schedule but exports the whole history.
    tuned = Trainer(tiny_train_config(train_dir, tmp_path / "tune", steps=2, batch_size=2))
    tuned.init_from_weights(dest)
    tuned.run()
    assert tuned.step == 2
    tuned_meta = export_weights(tmp_path / "tune" / "last.ckpt", tmp_path / "tuned.pt")
    assert tuned_meta["step"] == 32
    assert tuned_meta["train_wall_s"] > meta["train_wall_s"]


def test_training_refuses_kodak(tmp_path) -> None:
    kodak = tmp_path / "kodak"
    kodak.mkdir()
    Image.fromarray(gradient_image(64, 64)).save(kodak / "kodim01.png")
    with pytest.raises(ValueError, match="Kodak"):
        Trainer(TrainConfig(data=str(tmp_path), out=str(tmp_path / "r"), progress=False))


def test_config_round_trips_through_json() -> None:
    cfg = CodecConfig.tiny()
    assert CodecConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_config_refuses_unknown_keys_by_name() -> None:
    with pytest.raises(ValueError, match="latent_dimm"):
        CodecConfig.from_dict({"latent_dimm": 32})


# -- the shipped model -------------------------------------------------------------------------


def test_default_weights_load_offline_and_refine() -> None:
    from skimage import data

    model = codec.default_codec()
    assert model.num_stages == 5 and model.bits_per_index == 10
    assert model.config.codebook_size == 1024
    img = data.astronaut()[::2, ::2]  # 256×256
    code = model.encode(img)
    assert code.indices.shape == (5, 16, 16)
    outs = model.decode_batch(code, [code.stage_mask(k) for k in (1, 3, 5)])
    errors = [np.mean((o.astype(float) - img) ** 2) for o in outs]
    assert errors[0] > errors[1] > errors[2], errors


def test_default_model_quality_rises_with_stages_under_erasures() -> None:
    from skimage import data

    model = codec.default_codec()
    # Six 256-px crops: with three 128-px ones, 3 and 5 stages under 10 % holes were within noise.
    images = [
        data.coffee()[:256, :256],
        data.astronaut()[:256, 256:],
        data.astronaut()[256:, :256],
        data.chelsea()[:256, :256],
        data.rocket()[:256, :256],
        data.immunohistochemistry()[:256, :256],
    ]
    rng = np.random.default_rng(1)
    mean_err = []
    for k in (1, 3, 5):
        errs = []
        for img in images:
            code = model.encode(img)
            for _ in range(4):
                mask = code.stage_mask(k) & (rng.random(code.indices.shape) > 0.1)
                errs.append(np.mean((model.decode(code, mask).astype(float) - img) ** 2))
        mean_err.append(np.mean(errs))
    assert mean_err[0] > mean_err[1] > mean_err[2], mean_err


def test_default_model_keeps_colour() -> None:
    """A model that collapses to luminance scores fine on MS-SSIM and badly on everything else."""
    from skimage import data

    model = codec.default_codec()
    img = data.astronaut()[:256, :256]  # red, white and blue
    out = model.decode(model.encode(img)).astype(float)
    src = img.astype(float)

    def chroma(a):
        return a - a.mean(axis=2, keepdims=True)

    kept = np.abs(chroma(out)).mean() / np.abs(chroma(src)).mean()
    corr = np.corrcoef(chroma(out).ravel(), chroma(src).ravel())[0, 1]
    assert kept > 0.5 and corr > 0.7, (kept, corr)


def test_optional_patchgan_phase_trains(train_dir, tmp_path) -> None:
    cfg = tiny_train_config(
        train_dir,
        tmp_path / "gan",
        steps=4,
        batch_size=2,
        kmeans_batches=1,
        gan_weight=0.1,
        gan_start_step=2,
    )
    trainer = Trainer(cfg)
    trainer.kmeans_init()
    before = [p.detach().clone() for p in trainer.disc.parameters()]
    stats = [trainer.train_step() for _ in range(4)]
    assert stats[0]["gan_g"] == 0.0 and stats[-1]["gan_g"] != 0.0  # starts at gan_start_step
    assert any(
        not torch.equal(a, b) for a, b in zip(before, trainer.disc.parameters(), strict=True)
    )
    trainer.save()
    resumed = Trainer(cfg)
    resumed.load(tmp_path / "gan" / "last.ckpt")
    assert resumed.step == 4
