"""tools/narrow_level.py (how v9 came from v8), on a tiny model: the cut starts near the wide
model, and training touches only the levels it names."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codec.model import CodecConfig, ProgressiveCodec, film_columns
from codec.train import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("narrow_level", ROOT / "tools" / "narrow_level.py")
narrow_level = importlib.util.module_from_spec(spec)
spec.loader.exec_module(narrow_level)

TINY = CodecConfig(
    num_stages=3, codebook_size=16, latent_dim=8, enc_channels=(8, 12, 16), enc_depths=(1, 1, 1),
    dec_channels=(16, 12, 8, 8), dec_depths=(1, 1, 1, 1), attn_heads=2, latent_norm=True,
)  # fmt: skip


def _busy(config: CodecConfig = TINY, seed: int = 0) -> ProgressiveCodec:
    """A model whose every block does something, as a trained one does (a fresh block starts
    near the identity)."""
    torch.manual_seed(seed)
    net = ProgressiveCodec(config).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "pw2" in name or "proj" in name or "stage_film" in name:
                p.normal_(0, 0.2)
    return net


def _wide() -> ProgressiveCodec:
    return _busy()


def _smooth_images(n: int, side: int = 64) -> torch.Tensor:
    rng = np.random.default_rng(1)
    small = torch.from_numpy(rng.random((n, 3, side // 8, side // 8))).float()
    return torch.nn.functional.interpolate(small, size=(side, side), mode="bilinear")


def test_cut_keeps_the_rest_and_starts_near_the_wide_model():
    wide = _wide()
    crops = _smooth_images(6)
    narrow = narrow_level.cut(wide, 3, 6, crops)
    assert list(narrow.config.dec_channels) == [16, 12, 8, 6]
    sliced = {"dec_up.2.weight", "dec_up.2.bias", "dec_up.3.weight", "dec_up.3.bias"}
    for name, value in narrow.state_dict().items():
        if name.startswith("dec_levels.3.") or name in sliced or name == "stage_film.weight":
            continue
        assert torch.equal(value, wide.state_dict()[name]), name
    # the other levels' modulation columns are the wide model's
    cols_wide, cols_narrow = film_columns(wide.config), film_columns(narrow.config)
    for block in ("dec_levels.0.0", "dec_levels.1.0", "dec_levels.2.0"):
        (a, w), (b, _) = cols_wide[block], cols_narrow[block]
        assert torch.equal(
            narrow.stage_film.weight[:, b : b + w], wide.stage_film.weight[:, a : a + w]
        )
    # Closer to the wide model's pictures than the same shape with a fresh last level.
    test = _smooth_images(4)
    with torch.no_grad():
        ref = wide.decode_indices(wide.encode_indices(test))
        fresh = ProgressiveCodec(narrow.config).eval()
        fresh.load_state_dict(
            {k: v for k, v in narrow.state_dict().items() if not k.startswith("dec_")}
            | {k: v for k, v in wide.state_dict().items() if k.startswith("dec_levels.0")},
            strict=False,
        )
        err_cut = (narrow.decode_indices(narrow.encode_indices(test)) - ref).pow(2).mean()
        err_fresh = (fresh.decode_indices(fresh.encode_indices(test)) - ref).pow(2).mean()
    assert err_cut < 0.5 * err_fresh, (float(err_cut), float(err_fresh))


def test_cut_a_middle_level_of_two_blocks():
    wide = _busy(CodecConfig.from_dict({**TINY.to_dict(), "dec_depths": [1, 1, 2, 1]}))
    narrow = narrow_level.cut(wide, 2, 6, _smooth_images(6))
    assert list(narrow.config.dec_channels) == [16, 12, 6, 8]
    assert narrow.dec_levels[2][1].pw1.weight.shape == (12, 6, 1, 1)
    for name in ("dec_levels.3.0.pw1.weight", "dec_levels.1.0.dw.weight", "dec_up.3.weight"):
        assert torch.equal(narrow.state_dict()[name], wide.state_dict()[name]), name
    # Closer to the wide model than the same shape with that level and its convs fresh.
    fresh = ProgressiveCodec(narrow.config).eval()
    touched = ("dec_levels.2.", "dec_up.1.", "dec_up.2.", "stage_film.")
    fresh.load_state_dict(
        {k: v for k, v in narrow.state_dict().items() if not k.startswith(touched)}, strict=False
    )
    test = _smooth_images(4)
    with torch.no_grad():
        ref = wide.decode_indices(wide.encode_indices(test))
        err_cut = (narrow.decode_indices(narrow.encode_indices(test)) - ref).pow(2).mean()
        err_fresh = (fresh.decode_indices(fresh.encode_indices(test)) - ref).pow(2).mean()
    assert err_cut < 0.5 * err_fresh, (float(err_cut), float(err_fresh))


def test_cut_refuses_a_level_it_cannot_cut():
    with pytest.raises(ValueError, match="--level"):
        narrow_level.cut(_wide(), 0, 6, _smooth_images(2))
    with pytest.raises(ValueError, match="--channels"):
        narrow_level.cut(_wide(), 3, 8, _smooth_images(2))


def _three_block_level(noop: int) -> ProgressiveCodec:
    """A model whose 1/4 level has three blocks, block ``noop`` an exact identity."""
    net = _busy(CodecConfig.from_dict({**TINY.to_dict(), "dec_depths": [1, 1, 3, 1]}))
    with torch.no_grad():
        net.dec_levels[2][noop].pw2.weight.zero_()  # residual block: x + 0
        net.dec_levels[2][noop].pw2.bias.zero_()
    return net


@pytest.mark.parametrize("noop", [0, 1, 2])
def test_drop_removes_the_block_that_does_nothing(noop):
    src = _three_block_level(noop)
    dst, block, changes = narrow_level.drop(src, 2, _smooth_images(4))
    assert block == noop
    assert changes[noop] == 0.0 and min(c for i, c in enumerate(changes) if i != noop) > 0
    assert list(dst.config.dec_depths) == [1, 1, 2, 1]
    kept = [j for j in range(3) if j != noop]
    for new_j, old_j in enumerate(kept):
        for part in ("dw.weight", "pw1.weight", "pw2.bias"):
            assert torch.equal(
                dst.state_dict()[f"dec_levels.2.{new_j}.{part}"],
                src.state_dict()[f"dec_levels.2.{old_j}.{part}"],
            )
    # each remaining block keeps its own modulation columns
    old_cols, new_cols = film_columns(src.config), film_columns(dst.config)
    for new_j, old_j in enumerate(kept):
        (a, w), (b, _) = old_cols[f"dec_levels.2.{old_j}"], new_cols[f"dec_levels.2.{new_j}"]
        assert torch.equal(dst.stage_film.weight[:, b : b + w], src.stage_film.weight[:, a : a + w])
    (a, w), (b, _) = old_cols["dec_levels.3.0"], new_cols["dec_levels.3.0"]
    assert torch.equal(dst.stage_film.weight[:, b : b + w], src.stage_film.weight[:, a : a + w])
    # Dropping an identity changes nothing: the same pictures, at every depth, on new crops.
    test = _smooth_images(3, side=48)
    with torch.no_grad():
        indices = src.encode_indices(test)
        for received in narrow_level._depth_masks(indices):
            torch.testing.assert_close(
                dst.decode_indices(indices, received),
                src.decode_indices(indices, received),
                atol=1e-4, rtol=0,
            )  # fmt: skip


def test_drop_refits_the_conv_after_the_level():
    src = _busy(CodecConfig.from_dict({**TINY.to_dict(), "dec_depths": [1, 2, 1, 1]}), seed=1)
    crops = _smooth_images(6)
    dst, block, _ = narrow_level.drop(src, 1, crops)
    plain = narrow_level._without_block(src, 1, block)
    test = _smooth_images(4)
    with torch.no_grad():
        indices = src.encode_indices(test)
        ref = src.decode_indices(indices)
        err_refit = (dst.decode_indices(indices) - ref).pow(2).mean()
        err_plain = (plain.decode_indices(indices) - ref).pow(2).mean()
    assert 0 < err_refit < err_plain, (float(err_refit), float(err_plain))


def test_drop_refuses_a_level_it_cannot_drop():
    with pytest.raises(ValueError, match="single block"):
        narrow_level.drop(_wide(), 2, _smooth_images(2))
    with pytest.raises(ValueError, match="--level"):
        narrow_level.drop(_wide(), 4, _smooth_images(2))


def _corpus(folder: Path, count: int, seed: int) -> Path:
    """``count`` random 96×96 pictures in ``folder``/corpus, a training folder for the tools."""
    corpus = folder / "corpus"
    corpus.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(corpus / f"{i}.png")
    return corpus


def test_train_moves_only_the_named_levels(tmp_path):
    corpus = _corpus(tmp_path, 24, seed=3)
    weights = tmp_path / "w.pt"
    wide = _wide()
    torch.save({"state_dict": wide.state_dict(), "config": TINY.to_dict(), "model_id": 0}, weights)
    cfg = TrainConfig(
        data=str(corpus), out=str(tmp_path / "run"), crop_px=64, batch_size=2, steps=3,
        val_every=1000, export_every=0, progress=False, config=__import__("json").dumps(
            TINY.to_dict()), lr=1e-2, threads=1,
    )  # fmt: skip
    trainer = Trainer(cfg)
    trainer.init_from_weights(weights)
    # A level that does not exist must not make a run that learns nothing.
    for bad in ([4], [], [-1]):
        with pytest.raises(ValueError, match="--learn-levels"):
            narrow_level.learn_only_levels(trainer, bad)
    learning = narrow_level.learn_only_levels(trainer, [3])
    assert set(learning) == {
        "dec_levels.3.0.dw.weight", "dec_levels.3.0.dw.bias", "dec_levels.3.0.pw1.weight",
        "dec_levels.3.0.pw1.bias", "dec_levels.3.0.pw2.weight", "dec_levels.3.0.pw2.bias",
        "dec_up.2.weight", "dec_up.2.bias", "dec_up.3.weight", "dec_up.3.bias",
        "stage_film.weight",
    }  # fmt: skip
    before = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    trainer.run()
    after = trainer.net.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert {"dec_levels.3.0.pw1.weight", "dec_up.3.weight", "stage_film.weight"} <= moved
    assert moved <= set(learning), moved - set(learning)
    start, _ = film_columns(TINY)["dec_levels.3.0"]
    film_before, film_after = before["stage_film.weight"], after["stage_film.weight"]
    assert torch.equal(film_before[:, :start], film_after[:, :start])
    assert not torch.equal(film_before[:, start:], film_after[:, start:])


def test_command_line_reports_bad_input_in_one_line(tmp_path):
    import subprocess
    import sys

    for args in (["cut", "missing.pt", "out.pt", "--channels", "4", "--data", "."], []):
        run = subprocess.run(
            [sys.executable, str(ROOT / "tools" / "narrow_level.py"), *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode == 2, run.stderr
        assert "Traceback" not in run.stderr
    assert run.stderr.startswith("Narrow one synthesis level")  # no subcommand: the usage
    assert not (tmp_path / "out.pt").exists()


def test_drop_command_writes_a_loadable_model_or_refuses_in_one_line(tmp_path):
    import subprocess
    import sys

    from codec.zoo import load_codec

    corpus = _corpus(tmp_path, 12, seed=5)
    net = _busy(CodecConfig.from_dict({**TINY.to_dict(), "dec_depths": [1, 1, 2, 1]}))
    weights = tmp_path / "w.pt"
    blob = {"state_dict": net.state_dict(), "config": net.config.to_dict(), "model_id": 0}
    torch.save(blob, weights)

    def run(level: int) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "tools" / "narrow_level.py"), "drop", str(weights),
             str(tmp_path / f"out{level}.pt"), "--level", str(level), "--data", str(corpus),
             "--crop-px", "64", "--crops", "3"],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip

    refused = run(1)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "narrow_level.py: error: --level 1 has a single block; drop needs at least two"
    ]
    assert not (tmp_path / "out1.pt").exists()
    done = run(2)
    assert done.returncode == 0, done.stderr
    assert "x [1, 1, 1, 1]" in done.stderr
    dropped = load_codec(tmp_path / "out2.pt").net
    assert list(dropped.config.dec_depths) == [1, 1, 1, 1]
