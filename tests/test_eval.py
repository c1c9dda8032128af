"""Codec evaluation (codec.eval) with a tiny random model on generated images."""

from __future__ import annotations

import json
import math

import imagecodecs
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from codec import ProgressiveCode
from codec.classical import ClassicalError, search_quality
from codec.eval import (
    CLASSICAL_CODECS,
    SCALES,
    EvalError,
    codebook_usage,
    evaluate,
    find_images,
    fit_classical,
    fit_classical_budgets,
    jsonable,
    plot_rd,
    raw_bytes_for_stages,
    run_eval,
)

torch.set_num_threads(1)
SCHEMA_LISTS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time")


def _gradient(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x * y) % 256], -1).astype(np.uint8)


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    return {
        "astronaut": np.asarray(Image.fromarray(skdata.astronaut()).resize((128, 128))),
        "coffee": np.asarray(Image.fromarray(skdata.coffee()).resize((144, 96))),
        "gradient": _gradient(64, 80),
    }


@pytest.fixture(scope="module")
def folder(tmp_path_factory, images):
    d = tmp_path_factory.mktemp("imgs")
    for name, img in images.items():
        Image.fromarray(img).save(d / f"{name}.png")
    (d / "notes.txt").write_text("not an image")
    return d


def _check_schema(doc: dict, stages: int) -> None:
    assert isinstance(doc["name"], str) and doc["name"]
    assert isinstance(doc["description"], str) and doc["description"]
    res = doc["results"]
    for key in SCHEMA_LISTS:
        assert len(res[key]) == stages, key
        assert all(isinstance(v, float) and math.isfinite(v) for v in res[key]), key
    assert res["stages"] == list(range(1, stages + 1))
    assert all(0 <= v <= 1 for v in res["ms-ssim-rgb"])
    assert res["bpp"] == sorted(res["bpp"])


# -- whole evaluation ------------------------------------------------------------------------
def test_run_eval_writes_compressai_json_per_codec_and_plot(tiny, folder, tmp_path):
    out = tmp_path / "res" / "rvq.json"
    got = run_eval(
        folder,
        out,
        codec=tiny,
        progress=False,
        per_image=True,
        bytes_for_stages=lambda code, k: 700 * k,
        budget_label="700 bytes per stage (test)",
    )
    files = {
        k: tmp_path / "res" / n
        for k, n in {
            "rvq": "rvq.json",
            "avif": "rvq-avif.json",
            "jxl": "rvq-jxl.json",
            "jpeg": "rvq-jpeg.json",
        }.items()
    }
    assert got["files"] == {k: str(v) for k, v in files.items()}
    for key, path in files.items():
        doc = json.loads(path.read_text())
        _check_schema(doc, tiny.num_stages)
        assert doc["images"] == 3 and len(doc["per_image"]) == 3
        assert doc["results"]["bytes"] == [700.0, 1400.0]
        assert "700 bytes per stage (test)" in doc["description"]
        assert doc == got["results"][key]
    rvq = json.loads(files["rvq"].read_text())
    usage = rvq["codebook_usage"]
    assert len(usage["per_stage"]) == tiny.num_stages and usage["codebook_size"] == 16
    assert all(0 < u <= 1 for u in usage["per_stage"])
    avif = json.loads(files["avif"].read_text())
    for row in avif["per_image"]:
        assert all(b <= 700 * (k + 1) for k, b in enumerate(row["file_bytes"]))
        assert all(s in SCALES for s in row["scale"])
    assert avif["results"]["misses"] == [0, 0]
    plot = tmp_path / "res" / "rvq-rd.png"
    assert got["plot"] == str(plot)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_bytes_are_raw_index_bits(tiny, images):
    out = evaluate(tiny, images, codecs="rvq", per_image=True)
    rvq = out["rvq"]
    _check_schema(rvq, tiny.num_stages)
    for row in rvq["per_image"]:
        h, w = images[row["name"]].shape[:2]
        lat = math.ceil(h / 16) * math.ceil(w / 16)
        want = [math.ceil(k * lat * 4 / 8) for k in (1, 2)]  # tiny: 16 codes = 4-bit indices
        assert row["bytes"] == want
        assert row["bpp"] == pytest.approx([b * 8 / (h * w) for b in want])
    assert set(out) == {"rvq"}
    assert "per_image" not in evaluate(tiny, images, codecs=["rvq"])["rvq"]


def test_nothing_fits_is_a_counted_miss(tiny, images):
    # Raw tiny-model budgets are a few dozen bytes: no JPEG file is that small.
    out = evaluate(tiny, images, codecs="jpeg", per_image=True)
    jpeg = out["jpeg"]
    assert jpeg["results"]["misses"] == [3, 3]
    assert jpeg["results"]["file_bpp"] == [0.0, 0.0]
    for row in jpeg["per_image"]:
        assert row["miss"] == [True, True] and row["scale"] == [None, None]
        grey = np.full_like(images[row["name"]], 128)
        from codec.metrics import psnr

        assert row["psnr-rgb"][0] == pytest.approx(psnr(images[row["name"]], grey))


def test_select_modes(tiny, images):
    kw = {"codecs": "jpeg", "bytes_for_stages": lambda code, k: 900 * k, "per_image": True}
    each = evaluate(tiny, images, **kw)["jpeg"]
    by_ms = evaluate(tiny, images, select="ms-ssim", **kw)["jpeg"]
    by_psnr = evaluate(tiny, images, select="psnr", **kw)["jpeg"]
    e, m, p = each["results"], by_ms["results"], by_psnr["results"]
    # "each" is the best of both; each single-file choice is best in its own metric.
    assert e["ms-ssim-rgb"] == pytest.approx(m["ms-ssim-rgb"])
    assert e["psnr-rgb"] == pytest.approx(p["psnr-rgb"])
    assert all(a >= b - 1e-12 for a, b in zip(p["psnr-rgb"], m["psnr-rgb"], strict=True))
    for row in by_ms["per_image"]:
        assert row["psnr-rgb"] == row["file_psnr"]


@pytest.mark.slow  # two spawned processes import torch: several seconds
def test_workers_give_the_same_numbers(tiny, images):
    kw = {"codecs": "rvq,jpeg", "bytes_for_stages": lambda code, k: 800 * k}
    one = evaluate(tiny, images, **kw)
    two = evaluate(tiny, images, workers=2, **kw)
    for key in ("psnr-rgb", "ms-ssim-rgb", "bpp"):
        assert two["jpeg"]["results"][key] == pytest.approx(one["jpeg"]["results"][key])


def test_only_selected_codecs_are_written(tiny, folder, tmp_path):
    got = run_eval(
        folder,
        tmp_path / "r.json",
        codecs="jpeg",
        codec=tiny,
        progress=False,
        plot_path=tmp_path / "plots" / "rd.png",
        limit=1,
        bytes_for_stages=lambda code, k: 900 * k,
    )
    assert set(got["files"]) == {"jpeg"}
    assert not (tmp_path / "r.json").exists() and (tmp_path / "r-jpeg.json").exists()
    assert (tmp_path / "plots" / "rd.png").exists()
    assert got["results"]["jpeg"]["images"] == 1


# -- classical search ------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CLASSICAL_CODECS))
def test_classical_fit_respects_the_budget(images, name):
    img = images["astronaut"]
    budgets = [700, 1500, 3000]
    fits = fit_classical_budgets(img, name, budgets)
    for budget, fit in zip(budgets, fits, strict=True):
        assert not fit.miss
        assert 0 < fit.size_bytes <= budget
        assert fit.scale in SCALES
        assert fit.image.shape == img.shape and fit.image.dtype == np.uint8
        assert fit.best_ms_ssim >= fit.ms_ssim and fit.best_psnr >= fit.psnr
        decoded = CLASSICAL_CODECS[name].decode(fit.data)
        h, w = img.shape[:2]
        assert decoded.shape == (round(h / fit.scale), round(w / fit.scale), 3)
    assert fits[-1].ms_ssim >= fits[0].ms_ssim  # more bytes, no worse


def test_downscaled_candidates_are_used_when_full_size_cannot_fit(images):
    img = images["coffee"]
    h, w = img.shape[:2]
    full_min = len(imagecodecs.jpeg8_encode(img, level=1, optimize=True, subsampling="420"))
    small = np.asarray(Image.fromarray(img).resize((w // 4, h // 4), Image.Resampling.BICUBIC))
    small_min = len(imagecodecs.jpeg8_encode(small, level=1, optimize=True, subsampling="420"))
    assert small_min < full_min
    budget = (small_min + full_min) // 2
    fit = fit_classical(img, "jpeg", budget)
    assert fit.scale > 1 and fit.size_bytes <= budget
    assert fit.image.shape == img.shape
    assert all(c["scale"] > 1 for c in fit.candidates)
    only_full = fit_classical(img, "jpeg", budget, scales=(1,))
    assert only_full.miss and only_full.data is None and only_full.size_bytes == 0
    assert (only_full.image == 128).all()


def test_search_quality_finds_the_highest_fitting_setting():
    def size(q):
        calls.append(q)
        return int(300 * 2 ** (q / 12)) + q  # strictly increasing, roughly exponential

    calls: list[int] = []
    for budget in (300, 301, 1000, 5000, 20000, 10**9):
        q = search_quality(size, 0, 100, budget, {})
        assert q == max(x for x in range(101) if size(x) <= budget)
    calls = []
    assert search_quality(size, 0, 100, 299, {}) is None
    calls = []
    search_quality(size, 0, 100, 5000, {})
    assert len(calls) <= 10  # far fewer than a scan of 101 settings
    # Known sizes narrow the search: nothing new is needed when the boundary is known.
    known = {q: size(q) for q in (48, 49)}
    budget = known[48]
    calls = []
    assert search_quality(size, 0, 100, budget, known) == 48
    assert calls == [0]


def test_classical_bad_inputs():
    img = _gradient(32, 32)
    with pytest.raises(ClassicalError, match="unknown classical codec 'webp'"):
        fit_classical(img, "webp", 1000)
    with pytest.raises(ClassicalError, match="uint8 H×W×3"):
        fit_classical(img.astype(np.float32), "jpeg", 1000)
    with pytest.raises(ClassicalError, match="scales must be positive"):
        fit_classical(img, "jpeg", 1000, scales=(0, 2))
    with pytest.raises(ClassicalError, match="budgets must be positive"):
        fit_classical(img, "jpeg", 0)
    with pytest.raises(ClassicalError, match="select"):
        fit_classical(img, "jpeg", 1000, select="lpips")
    with pytest.raises(ClassicalError, match="at least 16 px"):
        fit_classical(_gradient(12, 40), "jpeg", 1000)


# -- codebook usage --------------------------------------------------------------------------
def test_codebook_usage_counts_distinct_codes_per_stage():
    a = ProgressiveCode(np.array([[[0, 1], [2, 3]], [[0, 0], [0, 0]]]), (32, 32), 4, 1)
    b = ProgressiveCode(np.array([[[4, 5], [0, 1]], [[1, 1], [1, 1]]]), (32, 32), 4, 1)
    assert codebook_usage([a, b], 16) == [6 / 16, 2 / 16]
    with pytest.raises(EvalError, match="at least one code"):
        codebook_usage([], 16)
    with pytest.raises(EvalError, match="outside a codebook of 4"):
        codebook_usage([a, b], 4)
    c = ProgressiveCode(np.zeros((3, 2, 2)), (32, 32), 4, 1)
    with pytest.raises(EvalError, match="stages"):
        codebook_usage([a, c], 16)


def test_raw_bytes_round_up():
    code = ProgressiveCode(np.zeros((5, 3, 3)), (48, 48), 10, 1)
    assert [raw_bytes_for_stages(code, k) for k in (1, 2, 5)] == [12, 23, 57]


# -- bad inputs and helpers ------------------------------------------------------------------
def test_eval_bad_inputs(tiny, folder, tmp_path, images):
    with pytest.raises(EvalError, match="unknown codec 'webp'"):
        run_eval(folder, tmp_path / "r.json", codecs="rvq,webp", codec=tiny)
    with pytest.raises(EvalError, match="no codecs selected"):
        evaluate(tiny, images, codecs=" , ")
    with pytest.raises(EvalError, match="no such image folder"):
        run_eval(tmp_path / "missing", tmp_path / "r.json", codec=tiny)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EvalError, match="no images"):
        run_eval(empty, tmp_path / "r.json", codec=tiny)
    with pytest.raises(EvalError, match=r"\.json"):
        run_eval(folder, tmp_path / "r.txt", codec=tiny)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(EvalError, match="broken"):
        run_eval(bad, tmp_path / "r.json", codecs="rvq", codec=tiny, progress=False)
    with pytest.raises(EvalError, match="no images to evaluate"):
        evaluate(tiny, {})
    with pytest.raises(EvalError, match="workers"):
        evaluate(tiny, images, workers=0)
    with pytest.raises(EvalError, match="select"):
        evaluate(tiny, images, select="best")
    with pytest.raises(EvalError, match="image tiny"):
        evaluate(tiny, {"tiny": _gradient(8, 8)}, codecs="rvq")


def test_find_images_sorts_and_limits(folder):
    assert [p.name for p in find_images(folder)] == ["astronaut.png", "coffee.png", "gradient.png"]
    assert [p.name for p in find_images(folder, limit=2)] == ["astronaut.png", "coffee.png"]
    assert [p.name for p in find_images(folder / "coffee.png")] == ["coffee.png"]


def test_json_sanitising_and_plot_of_missing_values(tmp_path):
    assert jsonable({"a": [math.inf, np.float32(1.5), np.int64(3)], "b": math.nan}) == {
        "a": [None, 1.5, 3],
        "b": None,
    }
    doc = {
        "name": "x",
        "results": {
            "bpp": [0.1, 0.2],
            "psnr-rgb": [None, 30.0],
            "ms-ssim-rgb": [0.8, 0.9],
            "stages": [1, 2],
        },
    }
    path = plot_rd({"rvq": doc, "avif": doc}, tmp_path / "rd.png")
    assert path.exists()
