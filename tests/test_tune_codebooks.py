"""tools/tune_codebooks.py on a tiny model: only the named stages' codes move, the shallower
previews stay bit for bit, the deeper ones get closer to the pictures, and bad input is one
line with exit 2."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codec.model import CodecConfig, ProgressiveCodec
from codec.train import TrainConfig, Trainer
from codec.zoo import load_codec

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("tune", ROOT / "tools" / "tune_codebooks.py")
tune = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tune)

# Three stages, so that a tune of the last leaves two below it that must not move.
TINY = dataclasses.replace(CodecConfig.tiny(), num_stages=3, latent_norm=True)


def _corpus(folder: Path, count: int = 6) -> Path:
    """Smooth random pictures: structure a tiny decoder can render, unlike white noise."""
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(count):
        small = Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8))
        small.resize((80, 80), Image.BILINEAR).save(folder / f"im{i}.png")
    return folder


def _weights(path: Path) -> Path:
    """A tiny untrained model as a weight file (its codebooks are random)."""
    torch.manual_seed(0)
    net = ProgressiveCodec(TINY)
    torch.save({"state_dict": net.state_dict(), "config": TINY.to_dict(), "model_id": 0}, path)
    return path


def _trainer(tmp_path: Path, steps: int, lr: float = 3e-2) -> Trainer:
    data = _corpus(tmp_path / "data")
    cfg = TrainConfig(
        data=str(data), out=str(tmp_path / "out"), crop_px=64, batch_size=4, steps=steps,
        lr=lr, warmup_steps=1, lr_floor=1.0, val_every=10_000, export_every=0,
        config=json.dumps(TINY.to_dict()), progress=False, msssim_weight=0.0, chroma_weight=0.0,
    )  # fmt: skip
    trainer = Trainer(cfg)
    trainer.init_from_weights(_weights(tmp_path / "tiny.pt"))
    trainer.kmeans_init()
    return trainer


def _full_depth_l1(trainer: Trainer, x: torch.Tensor, depth: int) -> tuple[float, torch.Tensor]:
    net = trainer.net.eval()
    with torch.no_grad():
        idx = net.encode_indices(x)
        received = torch.zeros_like(idx, dtype=torch.bool)
        received[:, :depth] = True
        recon = net.decode_indices(idx, received)
    return float((recon - x).abs().mean()), recon


def _crops_and_state(trainer: Trainer) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The corpus as one batch of 64-px crops, and a copy of every tensor before a tune."""
    crops = [np.array(im[:64, :64]) for im in trainer.train_images]
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2)
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    return x, {k: v.clone() for k, v in trainer.net.state_dict().items()}


def test_only_named_stages_move_and_deep_previews_improve(tmp_path):
    trainer = _trainer(tmp_path, steps=60)
    x, state_before = _crops_and_state(trainer)
    books_before = state_before["rvq.codebooks"]
    err_deep_before, _ = _full_depth_l1(trainer, x, 3)
    _, shallow_before = _full_depth_l1(trainer, x, 2)

    tune.tune_codebooks(trainer, [3])

    books = trainer.net.rvq.codebooks
    assert torch.equal(books[:2], books_before[:2])
    assert not torch.equal(books[2], books_before[2])
    for name, value in trainer.net.state_dict().items():
        if not name.startswith("rvq."):
            assert torch.equal(value, state_before[name]), name
    _, shallow_after = _full_depth_l1(trainer, x, 2)
    assert torch.equal(shallow_after, shallow_before)  # depth 2 does not use stage 3
    err_deep_after, _ = _full_depth_l1(trainer, x, 3)
    assert err_deep_after < err_deep_before, (err_deep_after, err_deep_before)


def test_film_rows_and_mask_columns_learn_only_for_the_tuned_depths(tmp_path):
    trainer = _trainer(tmp_path, steps=30)
    net = trainer.net
    x, state_before = _crops_and_state(trainer)
    _, shallow_before = _full_depth_l1(trainer, x, 2)

    tune.tune_codebooks(trainer, [3], film=True)

    film, film_before = net.stage_film.weight, state_before["stage_film.weight"]
    assert torch.equal(film[:2], film_before[:2]) and not torch.equal(film[2], film_before[2])
    cols, cols_before = net.from_latent.weight, state_before["from_latent.weight"]
    mask3 = TINY.latent_dim + 2
    assert torch.equal(cols[:, :mask3], cols_before[:, :mask3])
    assert not torch.equal(cols[:, mask3], cols_before[:, mask3])
    moved = {"stage_film.weight", "from_latent.weight"}
    for name, value in net.state_dict().items():
        if not name.startswith("rvq.") and name not in moved:
            assert torch.equal(value, state_before[name]), name
    _, shallow_after = _full_depth_l1(trainer, x, 2)
    assert torch.equal(shallow_after, shallow_before)
    assert not any(p.requires_grad for p in net.parameters())
    # The masking hooks are gone: a later training of this network moves every row again.
    net.stage_film.weight.requires_grad_(True)
    net.train()
    received = torch.ones(x.shape[0], 3, 4, 4, dtype=torch.bool)
    received[:, 1:] = False  # depth 1: only row 0 of the FiLM table is read
    net.synthesis(torch.randn(x.shape[0], TINY.latent_dim, 4, 4), received).sum().backward()
    assert net.stage_film.weight.grad[0].abs().sum() > 0


def test_stage_one_modulation_alone_leaves_every_deeper_preview(tmp_path):
    trainer = _trainer(tmp_path, steps=30)
    net = trainer.net
    x, state_before = _crops_and_state(trainer)
    deeper_before = [_full_depth_l1(trainer, x, d)[1] for d in (2, 3)]
    err_before, _ = _full_depth_l1(trainer, x, 1)

    tune.tune_codebooks(trainer, [], film=True, depths=[1])

    for name, value in net.state_dict().items():
        if name != "stage_film.weight":
            assert torch.equal(value, state_before[name]), name
    film, film_before = net.stage_film.weight, state_before["stage_film.weight"]
    assert torch.equal(film[1:], film_before[1:]) and not torch.equal(film[0], film_before[0])
    assert all(
        torch.equal(_full_depth_l1(trainer, x, d)[1], before)
        for d, before in zip((2, 3), deeper_before, strict=True)
    )
    assert _full_depth_l1(trainer, x, 1)[0] < err_before


def test_cli_writes_loadable_weights_with_consistent_ema_sums(tmp_path):
    data = _corpus(tmp_path / "data")
    out = tmp_path / "out"
    args = ["--stages", "2,3", "--init-weights", str(_weights(tmp_path / "tiny.pt")),
            "--data", str(data), "--out", str(out), "--crop-px", "64", "--batch-size", "2",
            "--steps", "3", "--val-every", "2", "--export-every", "0"]  # fmt: skip
    assert tune.cli(args) == 0
    (export,) = sorted(out.glob("step_*.pt"))
    codec = load_codec(export)
    assert codec.model_id == 0
    rvq = codec.net.rvq
    derived = rvq.codebooks * rvq.smoothed_count(rvq.ema_count)[..., None]
    assert torch.allclose(rvq.ema_sum, derived)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "val_msssim" in r] == [0, 2, 3]


@pytest.mark.parametrize(
    ("settings", "message"),
    [("0", "--stages must name stages between 1 and 3"), ("4", "between 1 and 3"),
     ("a,b", "got 'a,b'"), ("3 --depth-weighting odd", "--depth-weighting must be one of"),
     ("none", "nothing to tune"), ("none --film true", "--stages none needs --depths"),
     ("3 --depths 2,3", "--depths must start at the first tuned stage"),
     ("none --film true --depths 0", "--depths must name stages between 1 and 3")],
)  # fmt: skip
def test_bad_settings_are_one_line_and_exit_2(tmp_path, capsys, settings, message):
    data = _corpus(tmp_path / "data")
    args = ["--stages", *settings.split(), "--init-weights", str(_weights(tmp_path / "tiny.pt")),
            "--data", str(data), "--out", str(tmp_path / "out"), "--crop-px", "64"]  # fmt: skip
    assert tune.cli(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tune_codebooks.py: error:") and message in err
    assert "\n" not in err


def test_without_init_weights_is_refused(tmp_path, capsys):
    data = _corpus(tmp_path / "data")
    assert tune.cli(["--stages", "3", "--data", str(data), "--out", str(tmp_path / "o")]) == 2
    assert "--init-weights is required" in capsys.readouterr().err


def test_depth_weights_equal_or_by_training_stage_weights():
    assert tune.depth_weights([4, 5], 5, "equal", 0.35).tolist() == [0.5, 0.5]
    w = tune.depth_weights([2, 3, 4, 5], 5, "stage", 0.35)
    assert torch.isclose(w.sum(), torch.tensor(1.0))
    assert torch.allclose(w[:3], w[0].expand(3)) and w[3] > 0.7  # the full depth is favoured
    with pytest.raises(ValueError, match="--depth-weighting must be one of"):
        tune.depth_weights([2], 5, "odd", 0.35)


def test_stage_weighting_runs_from_the_command_line(tmp_path):
    data = _corpus(tmp_path / "data")
    out = tmp_path / "o"
    args = ["--stages", "2,3", "--depth-weighting", "stage", "--init-weights",
            str(_weights(tmp_path / "tiny.pt")), "--data", str(data), "--out", str(out),
            "--crop-px", "64", "--batch-size", "2", "--steps", "2"]  # fmt: skip
    assert tune.cli(args) == 0
    assert len(list(out.glob("step_*.pt"))) == 1
