"""PSNR, MS-SSIM and the offline-only LPIPS / DISTS in codec.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_msssim import ms_ssim as reference_ms_ssim

from codec.metrics import (
    DISTS,
    LPIPS,
    MetricError,
    MetricUnavailableError,
    load_perceptual,
    ms_ssim,
    ms_ssim_batch,
    ms_ssim_params,
    psnr,
    psnr_batch,
    score,
)

torch.set_num_threads(1)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth colour gradient with a little texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack(
        [x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) * 127 / max(h + w - 2, 1)], -1
    )
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _noisy(img: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


# -- PSNR --------------------------------------------------------------------------------------
def test_psnr_identical_is_inf_and_known_value():
    a = _image(40, 50)
    assert psnr(a, a) == math.inf
    b = a.copy()
    b[...] = 100
    c = b + 10  # every value off by 10: MSE 100
    assert psnr(b, c) == pytest.approx(10 * math.log10(255**2 / 100))


def test_psnr_batch_matches_single_and_orders_by_noise():
    a = _image(48, 64)
    tests = [_noisy(a, s) for s in (2, 8, 20)]
    batch = psnr_batch(a, tests)
    assert batch.shape == (3,)
    assert batch[0] > batch[1] > batch[2]
    assert batch[1] == pytest.approx(psnr(a, tests[1]))
    # A stacked [N, H, W, 3] array works too.
    assert np.allclose(psnr_batch(a, np.stack(tests)), batch)


def test_psnr_equals_the_float64_formula_bit_for_bit():
    # The integer path must not move a single reported digit against the textbook formula,
    # including the extremes (every sample off by 255) and both ends of the range.
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (33, 47, 3), dtype=np.uint8)
    tests = [rng.integers(0, 256, a.shape, dtype=np.uint8), 255 - a, _noisy(a, 1.0)]
    got = psnr_batch(a, tests)
    for t, g in zip(tests, got, strict=True):
        mse = np.mean((t.astype(np.float64) - a.astype(np.float64)) ** 2)
        assert g == 10 * np.log10(255.0**2 / mse)
    full = np.zeros((16, 16, 3), np.uint8)
    assert psnr(full, full + 255) == 0.0


# -- MS-SSIM -----------------------------------------------------------------------------------
def test_ms_ssim_identical_is_one_and_drops_with_noise():
    a = _image(200, 240)
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    vals = ms_ssim_batch(a, [_noisy(a, 5), _noisy(a, 25)])
    assert 1.0 > vals[0] > vals[1] > 0


@pytest.mark.parametrize("shape", [(161, 200), (256, 171), (180, 180)])
def test_ms_ssim_matches_pytorch_msssim(shape):
    a = _image(*shape)
    b = _noisy(a, 18)

    def t(x):
        return torch.from_numpy(x).permute(2, 0, 1)[None].float()

    want = reference_ms_ssim(t(a), t(b), data_range=255).item()
    assert ms_ssim(a, b) == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize(
    ("side", "scales"),
    [(11, 1), (20, 1), (21, 2), (40, 2), (41, 3), (80, 3), (81, 4), (160, 4), (161, 5), (768, 5)],
)
def test_ms_ssim_scales_for_small_images(side, scales):
    assert ms_ssim_params(side, side + 7) == scales


@pytest.mark.parametrize("shape", [(16, 16), (24, 40), (64, 64), (100, 150)])
def test_small_images_score_sensibly(shape):
    a = _image(*shape)
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    assert 0 <= ms_ssim(a, _noisy(a, 30)) < 1


def test_too_small_for_ms_ssim_is_refused():
    a = _image(10, 40)
    with pytest.raises(MetricError, match="at least 11 px"):
        ms_ssim(a, a)
    assert psnr(a, a) == math.inf  # PSNR has no such limit


def test_greyscale_inputs_are_expanded():
    a = _image(32, 32)[..., 0]
    assert ms_ssim(a, a[..., None]) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    ("ref", "test", "match"),
    [
        (np.zeros((20, 20, 3), np.float32), np.zeros((20, 20, 3), np.uint8), "uint8"),
        (np.zeros((20, 20, 3), np.uint8), np.zeros((20, 21, 3), np.uint8), r"\(20, 21, 3\)"),
        (np.zeros((20, 20, 4), np.uint8), np.zeros((20, 20, 4), np.uint8), "H×W×3"),
        ([[0]], np.zeros((20, 20, 3), np.uint8), "numpy array"),
    ],
)
def test_bad_inputs_get_clear_errors(ref, test, match):
    with pytest.raises(MetricError, match=match):
        psnr(ref, test)
    with pytest.raises(MetricError, match=match):
        ms_ssim(ref, test)


def test_empty_batch_is_refused():
    with pytest.raises(MetricError, match="no test images"):
        ms_ssim_batch(_image(20, 20), [])


def test_score_has_both_metrics():
    a = _image(30, 30)
    s = score(a, _noisy(a, 10))
    assert set(s) == {"psnr", "ms-ssim"}


# -- LPIPS / DISTS with random weights in the published formats ------------------------------
# Conv layer shapes of torchvision's feature stacks, written out independently of the module.
ALEX_CONVS = {
    0: (64, 3, 11),
    3: (192, 64, 5),
    6: (384, 192, 3),
    8: (256, 384, 3),
    10: (256, 256, 3),
}
VGG16_CONVS = {
    0: (64, 3),
    2: (64, 64),
    5: (128, 64),
    7: (128, 128),
    10: (256, 128),
    12: (256, 256),
    14: (256, 256),
    17: (512, 256),
    19: (512, 512),
    21: (512, 512),
    24: (512, 512),
    26: (512, 512),
    28: (512, 512),
}


def _torchvision_state(net: str, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    if net == "alex":
        for i, (co, ci, k) in ALEX_CONVS.items():
            state[f"features.{i}.weight"] = (
                torch.randn(co, ci, k, k, generator=gen) * (2 / (ci * k * k)) ** 0.5
            )
            state[f"features.{i}.bias"] = torch.zeros(co)
        state["classifier.1.weight"] = torch.zeros(4, 9216)  # ignored
    else:
        for i, (co, ci) in VGG16_CONVS.items():
            state[f"features.{i}.weight"] = (
                torch.randn(co, ci, 3, 3, generator=gen) * (2 / (ci * 9)) ** 0.5
            )
            state[f"features.{i}.bias"] = torch.full((co,), 0.01)
        state["classifier.0.weight"] = torch.zeros(4, 25088)
    return state


def _lpips_lins(net: str) -> dict[str, torch.Tensor]:
    chans = (64, 192, 384, 256, 256) if net == "alex" else (64, 128, 256, 512, 512)
    return {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(chans)}


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    paths = {}
    for net in ("alex", "vgg"):
        paths[net] = d / f"{net}.pth"
        torch.save(_torchvision_state(net), paths[net])
        paths[f"lin-{net}"] = d / f"lin-{net}.pth"
        torch.save(_lpips_lins(net), paths[f"lin-{net}"])
    paths["dists"] = d / "dists.pt"
    torch.save(
        {"alpha": torch.rand(1, 1475, 1, 1), "beta": torch.rand(1, 1475, 1, 1)}, paths["dists"]
    )
    return paths


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_loads_torchvision_weights_and_scores(weight_files, net):
    lp = LPIPS(weight_files[net], weight_files[f"lin-{net}"], net=net)
    a = _image(64, 64)
    assert lp(a, a) == pytest.approx(0.0, abs=1e-7)
    near, far = lp.batch(a, [_noisy(a, 5), _noisy(a, 40)])
    assert 0 < near < far


def test_lpips_loads_a_whole_lpips_module_state_dict(weight_files, tmp_path):
    # lpips.LPIPS().state_dict(): backbone under net.sliceK.N.*, linear layers under linK.*
    state = {
        k.replace("features.", "net.slice1."): v
        for k, v in _torchvision_state("alex").items()
        if k.startswith("features.")
    }
    state |= _lpips_lins("alex")
    state["scaling_layer.shift"] = torch.zeros(1, 3, 1, 1)
    path = tmp_path / "lpips_full.pth"
    torch.save(state, path)
    lp = load_perceptual("lpips", path)
    a = _image(48, 48)
    assert lp(a, a) == pytest.approx(0.0, abs=1e-7)
    assert lp(a, _noisy(a, 20)) > 0


def test_dists_loads_and_scores(weight_files):
    d = DISTS(weight_files["vgg"], weight_files["dists"])
    a = _image(64, 64)
    assert abs(d(a, a)) < 1e-5
    near, far = d.batch(a, [_noisy(a, 5), _noisy(a, 40)])
    assert 0 < near < far
    assert isinstance(load_perceptual("dists", weight_files["vgg"], weight_files["dists"]), DISTS)


def test_perceptual_metrics_in_score(weight_files):
    lp = LPIPS(weight_files["alex"], weight_files["lin-alex"])
    a = _image(40, 40)
    s = score(a, _noisy(a, 10), {"lpips": lp})
    assert set(s) == {"psnr", "ms-ssim", "lpips"} and s["lpips"] > 0


def test_perceptual_from_a_folder_with_published_names(weight_files, tmp_path):
    import shutil

    shutil.copy(weight_files["alex"], tmp_path / "alexnet-owt-7be5be79.pth")
    shutil.copy(weight_files["lin-alex"], tmp_path / "alex.pth")
    shutil.copy(weight_files["vgg"], tmp_path / "vgg16-397923af.pth")
    shutil.copy(weight_files["dists"], tmp_path / "weights.pt")
    a = _image(40, 40)
    assert load_perceptual("lpips", tmp_path)(a, a) == pytest.approx(0.0, abs=1e-7)
    assert isinstance(load_perceptual("dists", tmp_path), DISTS)
    with pytest.raises(MetricUnavailableError, match=r"vgg\.pth.*found none"):
        load_perceptual("lpips-vgg", tmp_path)


@pytest.mark.parametrize("name", ["lpips", "lpips-vgg", "dists"])
def test_perceptual_without_weights_is_unavailable(name):
    with pytest.raises(MetricUnavailableError, match=r"needs local weights.*Nothing is downloaded"):
        load_perceptual(name)


def test_perceptual_bad_files_get_clear_errors(weight_files, tmp_path):
    with pytest.raises(MetricUnavailableError, match="no file at"):
        LPIPS(tmp_path / "missing.pth", weight_files["lin-alex"])
    with pytest.raises(MetricUnavailableError, match="lin0"):
        LPIPS(weight_files["alex"])  # backbone alone has no linear layers
    with pytest.raises(MetricUnavailableError, match="lacks backbone weights"):
        LPIPS(weight_files["alex"], weight_files["lin-alex"], net="vgg")  # wrong backbone
    with pytest.raises(MetricUnavailableError, match=r"lin1 .* has 192 weights"):
        LPIPS(weight_files["vgg"], weight_files["lin-alex"], net="vgg")
    with pytest.raises(MetricUnavailableError, match="'alpha'"):
        DISTS(weight_files["vgg"], weight_files["lin-vgg"])
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(MetricUnavailableError, match="cannot read"):
        DISTS(junk, weight_files["dists"])
    with pytest.raises(MetricUnavailableError, match="unknown metric"):
        load_perceptual("flip", junk)
    with pytest.raises(MetricUnavailableError, match="net must be"):
        LPIPS(weight_files["alex"], weight_files["lin-alex"], net="resnet")


def test_prepared_reference_scores_like_the_functions() -> None:
    from codec.metrics import Reference, ms_ssim_batch, psnr_batch

    rng = np.random.default_rng(5)
    ref = rng.integers(0, 256, (200, 180, 3), dtype=np.uint8)
    tests = [
        np.clip(ref.astype(int) + rng.integers(-30, 30, ref.shape), 0, 255).astype(np.uint8)
        for _ in range(5)
    ]
    r = Reference(ref)
    assert np.array_equal(r.ms_ssim_batch(tests), ms_ssim_batch(ref, tests))
    assert np.array_equal(r.psnr_batch(tests), psnr_batch(ref, tests))
    assert r.ms_ssim(tests[0]) == ms_ssim_batch(ref, tests)[0]
    with pytest.raises(MetricError, match="shape"):
        r.ms_ssim(tests[0][:100])
