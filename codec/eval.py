"""Evaluate the learned codec against AVIF, JPEG XL and JPEG at the same number of bytes sent.

>>> from codec.eval import run_eval
>>> run_eval("/data/kodak", "results/rvq.json")                  # doctest: +SKIP

**Files.** CompressAI's plotting tool reads one JSON per codec, so that is what is written:

- ``out_json`` holds the RVQ codec (when ``"rvq"`` is among ``codecs``);
- ``<stem>-avif.json``, ``<stem>-jxl.json``, ``<stem>-jpeg.json`` beside it hold the classical
  codecs (``results/rvq.json`` -> ``results/rvq-avif.json`` ...);
- ``<stem>-rd.png`` (or ``plot_path``) is the rate-distortion plot of all of them.

Each file has CompressAI's schema, ``{"name", "description", "results": {"bpp", "psnr-rgb",
"ms-ssim-rgb", "encoding_time", "decoding_time"}}``, with one entry per stage count ``k = 1..S``
(means over the images; times in seconds). ``results`` also holds ``"stages"`` and ``"bytes"``
(mean bytes sent), and for the classical codecs ``"file_bpp"`` (mean size of the files actually
produced) and ``"misses"`` (images for which nothing fitted). The RVQ file adds
``"codebook_usage"``; with ``per_image=True`` every file adds ``"per_image"``. Non-finite numbers
(PSNR of a lossless result) are written as ``null``.

**Bytes.** ``bpp`` counts the bytes actually sent: ``bytes_for_stages(code, k) * 8 / pixels``. The
default counts the raw index bits, ``ceil(k * h * w * bits / 8)``; the CLI passes the packet layer's
count (whole 360-byte packets, headers included; ``budget_label`` says so in the descriptions).
``codec`` never imports the transport: the function is injected.

**Classical codecs at the same budget.** For each image and stage count ``k`` a classical codec
may use ``classical_budget(code, k)`` bytes of file, by default the same bytes the RVQ packets
take (headers included, which favours the classical codec slightly: its file would need headers
too). Its ``bpp`` is that budget, since it is sent in the same packets; ``file_bpp`` is the size of
the files actually made. The codecs and the search live in :mod:`codec.classical`
(:func:`~codec.classical.fit_classical_budgets`); per image and budget:

1. for each downscale factor in :data:`SCALES` (1, 2, 3, 4, 6, 8: the image is shrunk with
   Pillow's antialiased bicubic filter, coded, decoded and enlarged back with bicubic), find the
   highest quality setting whose file fits (:func:`codec.classical.search_quality`:
   interpolation search on log size, a handful of encodes; encodes are cached per image so the
   budgets share them);
2. score each scale's file (PSNR and MS-SSIM after enlarging). Factors are tried from 1 up and
   the search stops once a factor fits at the top quality or two successive factors score worse
   on both metrics;
3. report, with the default ``select="each"``, the best PSNR and the best MS-SSIM over those
   candidates (the classical codec's best case for each metric, which is how the issue's AVIF
   reference table was measured; the two may come from different files). ``select="ms-ssim"``
   or ``"psnr"`` reports both scores of the one file best by that metric.

When nothing fits at any scale it is a **miss**: the receiver has nothing, so it scores as a
mid-grey image, and ``misses`` counts them per stage count.

**Settings.** AVIF: libavif (libaom) via imagecodecs, 4:4:4, speed 6 (the libavif default; speed
8 is four times faster but loses 0.5 to 1 dB here, which would flatter the RVQ codec), quality
0..100. JPEG XL: libjxl, quality 0..100 (distance 25..0), effort 7. JPEG: libjpeg, quality 1..100,
optimised Huffman tables, 4:2:0. One thread per encoder; ``workers`` runs images in parallel.
CPU time per Kodak image measured here: AVIF about 9 s (about 85 encodes for the five budgets),
JPEG XL about 9 s, JPEG about 2 s (nearly all of it scoring), RVQ about 2 s (five decodes).
Encoding and decoding times of a classical codec are those of the file chosen by MS-SSIM.
Check against the issue's AVIF reference (raw budgets 1,920 … 9,600 bytes, mean over Kodak,
MS-SSIM 0.8215 / 0.8795 / 0.9106 / 0.9267 / 0.9389): on six Kodak images (01, 02, 10, 18, 22,
23) this search gives 0.815 / 0.877 / 0.908 / 0.926 / 0.938 (PSNR 24.8 / 26.7 / 27.9 / 28.8 /
29.4 dB against 24.3 / 26.0 / 27.2 / 28.1 / 28.9 for all 24).

**Codebook usage** (:func:`codebook_usage`) is the fraction of each stage's codebook that occurs at
least once over the image set.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from codec.api import Codec, CodecInputError, check_search, load_image
from codec.classical import (
    CLASSICAL_CODECS,
    MISS_GREY,
    SCALES,
    ClassicalCodec,
    ClassicalError,
    ClassicalFit,
    fit_classical,
    fit_classical_budgets,
)
from codec.code import ProgressiveCode
from codec.data import IMAGE_SUFFIXES
from codec.metrics import ms_ssim_batch, psnr_batch

__all__ = [
    "CLASSICAL_CODECS",
    "CODEC_NAMES",
    "IMAGE_SUFFIXES",
    "MISS_GREY",
    "SCALES",
    "ClassicalCodec",
    "ClassicalFit",
    "EvalError",
    "codebook_usage",
    "evaluate",
    "find_images",
    "fit_classical",
    "fit_classical_budgets",
    "jsonable",
    "plot_rd",
    "raw_bytes_for_stages",
    "run_eval",
]

BytesForStages = Callable[[ProgressiveCode, int], int]
# Image files a folder of test pictures may hold (find_images; satlink's sweep reads the same).
CODEC_NAMES: tuple[str, ...] = ("rvq", *CLASSICAL_CODECS)


class EvalError(ClassicalError):
    """An evaluation that cannot run as asked; the message says why."""


def raw_bytes_for_stages(code: ProgressiveCode, stages: int) -> int:
    """Default byte count: the first ``stages`` stages' index bits, rounded up to bytes."""
    h, w = code.latent_shape
    return -(-stages * h * w * code.bits_per_index // 8)


# -- codebook usage ----------------------------------------------------------------------------
def codebook_usage(codes: Iterable[ProgressiveCode], codebook_size: int) -> list[float]:
    """Fraction of the ``codebook_size`` codes that occur at least once, per stage."""
    seen: list[np.ndarray] | None = None
    for code in codes:
        if seen is None:
            seen = [np.zeros(codebook_size, bool) for _ in range(code.num_stages)]
        if code.num_stages != len(seen):
            raise EvalError(
                f"codes have {code.num_stages} and {len(seen)} stages; usage needs one model"
            )
        for s in range(code.num_stages):
            idx = code.indices[s].ravel()
            if idx.size and int(idx.max()) >= codebook_size:
                raise EvalError(
                    f"index {int(idx.max())} at stage {s + 1} is outside a "
                    f"codebook of {codebook_size}"
                )
            seen[s][idx] = True
    if seen is None:
        raise EvalError("codebook usage needs at least one code")
    return [float(s.mean()) for s in seen]


# -- evaluation --------------------------------------------------------------------------------
def _parse_codecs(codecs: str | Sequence[str]) -> list[str]:
    names = codecs.split(",") if isinstance(codecs, str) else list(codecs)
    out: list[str] = []
    for n in names:
        n = n.strip().lower()
        if not n:
            continue
        if n not in CODEC_NAMES:
            raise EvalError(f"unknown codec {n!r}; choose from {', '.join(CODEC_NAMES)}")
        if n not in out:
            out.append(n)
    if not out:
        raise EvalError(f"no codecs selected; choose from {', '.join(CODEC_NAMES)}")
    return out


def find_images(data: str | Path, limit: int | None = None) -> list[Path]:
    """Image files in a folder (sorted by name), or the one file given."""
    p = Path(data)
    if p.is_file():
        files = [p]
    elif p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    else:
        raise EvalError(f"no such image folder or file: {p}")
    if not files:
        raise EvalError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {p}")
    return files[:limit] if limit else files


def _mean(values: Iterable[float]) -> float:
    v = list(values)
    return float(np.mean(v)) if v else float("nan")


def jsonable(x: Any) -> Any:
    """A copy fit for strict JSON: non-finite floats become None, numpy scalars Python ones."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _classical_rows(
    image: np.ndarray | str | Path,
    cname: str,
    budgets: list[int],
    scales: Sequence[int],
    select: str,
) -> list[dict]:
    """Fit one image at every budget; plain dicts (no pixels), so a worker can return them."""
    rgb = load_image(image) if not isinstance(image, np.ndarray) else image
    fits = fit_classical_budgets(
        rgb, cname, budgets, scales, "psnr" if select == "psnr" else "ms-ssim"
    )
    return [
        {
            "psnr": f.psnr,
            "ms_ssim": f.ms_ssim,
            "best_psnr": f.best_psnr,
            "best_ms_ssim": f.best_ms_ssim,
            "bytes": f.size_bytes,
            "scale": f.scale,
            "quality": f.quality,
            "encode_s": f.encode_s,
            "decode_s": f.decode_s,
            "miss": f.miss,
        }
        for f in fits
    ]


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def evaluate(
    codec: Codec,
    images: Mapping[str, np.ndarray] | Sequence[tuple[str, np.ndarray | str | Path]],
    codecs: str | Sequence[str] = CODEC_NAMES,
    bytes_for_stages: BytesForStages | None = None,
    classical_budget: BytesForStages | None = None,
    per_image: bool = False,
    scales: Sequence[int] = SCALES,
    select: str = "each",
    workers: int = 1,
    progress: bool = False,
    budget_label: str = "",
    effort: int = 0,
    beam_width: int = 1,
) -> dict[str, dict]:
    """Score ``codec`` and the selected classical codecs on ``images`` (name -> image).

    Images are uint8 arrays or anything :func:`codec.load_image` reads. Returns
    ``{codec name: CompressAI-schema dict}`` (see the module docstring); nothing is written.
    ``bytes_for_stages(code, k)`` counts the bytes sent for ``k`` stages (default
    :func:`raw_bytes_for_stages`); ``classical_budget(code, k)`` the file bytes a classical
    codec may use (default the same). ``select``: ``"each"`` reports a classical codec's best
    PSNR and best MS-SSIM over the fitting candidates (possibly different files),
    ``"ms-ssim"``/``"psnr"`` both scores of the one file best by that metric. ``workers > 1``
    runs the classical searches in that many processes. ``effort`` is the RVQ encoder's
    refinement steps and ``beam_width`` its beam search (:meth:`codec.Codec.encode`); encode
    times include them.
    """
    names = _parse_codecs(codecs)
    if select not in ("each", "ms-ssim", "psnr"):
        raise EvalError(f"select must be 'each', 'ms-ssim' or 'psnr', got {select!r}")
    if not isinstance(workers, int) or workers < 1:
        raise EvalError(f"workers must be a positive integer, got {workers!r}")
    items = list(images.items()) if isinstance(images, Mapping) else list(images)
    if not items:
        raise EvalError("no images to evaluate")
    count_bytes = bytes_for_stages or raw_bytes_for_stages
    budget_fn = classical_budget or count_bytes
    classical = [n for n in names if n != "rvq"]
    stages = list(range(1, codec.num_stages + 1))
    rows: dict[str, list[dict]] = {n: [] for n in names}
    pending: dict[str, list] = {n: [] for n in classical}  # per image: rows or a future
    meta: list[tuple[str, int, list[int], list[int]]] = []  # name, pixels, sent, budgets
    codes = []

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items) * len(names), desc="codec eval", unit="fit")
    pool = None
    if workers > 1 and classical:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
        )
    try:
        for name, img in items:
            try:
                rgb = load_image(img)
            except CodecInputError as exc:
                raise EvalError(f"image {name}: {exc}") from None
            pixels = rgb.shape[0] * rgb.shape[1]
            try:
                t0 = time.perf_counter()
                code = codec.encode(rgb, effort=effort, beam_width=beam_width)
                enc_s = time.perf_counter() - t0
            except CodecInputError as exc:
                raise EvalError(f"image {name}: {exc}") from None
            codes.append(code)
            sent = [int(count_bytes(code, k)) for k in stages]
            budgets = [int(budget_fn(code, k)) for k in stages]
            meta.append((name, pixels, sent, budgets))
            for cname in classical:
                if pool is not None:
                    pending[cname].append(
                        pool.submit(_classical_rows, rgb, cname, budgets, tuple(scales), select)
                    )
                    pending[cname][-1].add_done_callback(
                        lambda _f: bar.update() if bar is not None else None
                    )
                else:
                    pending[cname].append(_classical_rows(rgb, cname, budgets, scales, select))
                    if bar is not None:
                        bar.update()
            if "rvq" in names:
                recs, dec_s = [], []
                for k in stages:
                    t0 = time.perf_counter()
                    recs.append(codec.decode(code, code.stage_mask(k)))
                    dec_s.append(time.perf_counter() - t0)
                rows["rvq"].append(
                    {
                        "name": name,
                        "bytes": sent,
                        "bpp": [b * 8 / pixels for b in sent],
                        "psnr-rgb": psnr_batch(rgb, recs).tolist(),
                        "ms-ssim-rgb": ms_ssim_batch(rgb, recs).tolist(),
                        "encoding_time": [enc_s] * len(stages),
                        "decoding_time": dec_s,
                    }
                )
                if bar is not None:
                    bar.update()
        for cname in classical:
            for (name, pixels, sent, budgets), job in zip(meta, pending[cname], strict=True):
                fits = job.result() if pool is not None else job
                each = select == "each"
                rows[cname].append(
                    {
                        "name": name,
                        "bytes": sent,
                        "bpp": [b * 8 / pixels for b in sent],
                        "psnr-rgb": [f["best_psnr" if each else "psnr"] for f in fits],
                        "ms-ssim-rgb": [f["best_ms_ssim" if each else "ms_ssim"] for f in fits],
                        "encoding_time": [f["encode_s"] for f in fits],
                        "decoding_time": [f["decode_s"] for f in fits],
                        "budget_bytes": budgets,
                        "file_bytes": [f["bytes"] for f in fits],
                        "file_bpp": [f["bytes"] * 8 / pixels for f in fits],
                        "file_psnr": [f["psnr"] for f in fits],
                        "file_ms_ssim": [f["ms_ssim"] for f in fits],
                        "scale": [f["scale"] for f in fits],
                        "quality": [f["quality"] for f in fits],
                        "miss": [f["miss"] for f in fits],
                    }
                )
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if bar is not None:
            bar.close()

    budget_text = budget_label or (
        "bytes sent counted by " + getattr(count_bytes, "__qualname__", repr(count_bytes))
    )
    chosen = {
        "each": "the best PSNR and the best MS-SSIM over the fitting candidates "
        "(possibly different files)",
        "ms-ssim": "both scores of the file with the best MS-SSIM",
        "psnr": "both scores of the file with the best PSNR",
    }[select]
    out: dict[str, dict] = {}
    for cname in names:
        r = rows[cname]
        results: dict[str, list] = {"stages": stages}
        for key in ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time", "bytes"):
            results[key] = [_mean(row[key][i] for row in r) for i in range(len(stages))]
        if cname == "rvq":
            desc = (
                f"Progressive RVQ codec {codec.name} (model id {codec.model_id}), "
                f"{codec.num_stages} stages of {codec.config.codebook_size} codes; "
                f"one entry per stage count; encoder effort {effort}, beam width {beam_width}; "
                f"{budget_text}"
            )
            doc: dict[str, Any] = {"name": codec.name, "description": desc, "results": results}
            usage = codebook_usage(codes, codec.config.codebook_size)
            doc["codebook_usage"] = {
                "per_stage": usage,
                "min": min(usage),
                "codebook_size": codec.config.codebook_size,
                "images": len(codes),
            }
        else:
            cc = CLASSICAL_CODECS[cname]
            for key in ("file_bpp", "budget_bytes"):
                results[key] = [_mean(row[key][i] for row in r) for i in range(len(stages))]
            results["misses"] = [sum(row["miss"][i] for row in r) for i in range(len(stages))]
            desc = (
                f"{cc.label} ({cc.settings}) within the bytes of the RVQ packets for k "
                f"stages, best quality setting per downscale factor {tuple(scales)} "
                f"(bicubic); reports {chosen}; a miss (nothing fits) scores as mid-grey; "
                f"{budget_text}"
            )
            doc = {"name": cc.label, "description": desc, "results": results}
        doc["images"] = len(r)
        if per_image:
            doc["per_image"] = r
        out[cname] = jsonable(doc)
    return out


def _sibling(out_json: Path, suffix: str, ext: str = ".json") -> Path:
    return out_json.with_name(f"{out_json.stem}-{suffix}{ext}")


def run_eval(
    data_dir: str | Path,
    out_json: str | Path,
    codecs: str | Sequence[str] = CODEC_NAMES,
    bytes_for_stages: BytesForStages | None = None,
    per_image: bool = False,
    plot_path: str | Path | None = None,
    codec: Codec | None = None,
    progress: bool = True,
    limit: int | None = None,
    classical_budget: BytesForStages | None = None,
    budget_label: str = "",
    workers: int = 1,
    select: str = "each",
    effort: int = 0,
    beam_width: int = 1,
) -> dict:
    """Evaluate on the images in ``data_dir``, write the JSON files and the RD plot.

    Returns ``{"results": {codec: dict}, "files": {codec: path}, "plot": path}``. ``codec``
    defaults to the shipped model; ``limit`` takes the first N images (sorted by name);
    ``plot_path`` defaults to ``<stem>-rd.png`` beside ``out_json``. ``budget_label`` says in
    the descriptions how ``bytes_for_stages`` counts (for example "whole 360-byte packets,
    headers included"). The other arguments are :func:`evaluate`'s.
    """
    out_json = Path(out_json)
    if out_json.suffix.lower() != ".json":
        raise EvalError(f"--out must name a .json file, got {out_json}")
    names = _parse_codecs(codecs)
    try:
        check_search(effort, beam_width)  # before any folder is made or image read
    except CodecInputError as exc:
        raise EvalError(str(exc)) from None
    files = find_images(data_dir, limit)
    if codec is None:
        from codec.zoo import default_codec

        codec = default_codec()
    try:
        out_json.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvalError(f"cannot create output folder {out_json.parent}: {exc}") from None
    images = ((f.stem, f) for f in files)  # loaded lazily, one at a time
    results = evaluate(
        codec,
        list(images),
        names,
        bytes_for_stages,
        classical_budget,
        per_image=per_image,
        select=select,
        workers=workers,
        progress=progress,
        budget_label=budget_label,
        effort=effort,
        beam_width=beam_width,
    )
    for doc in results.values():
        doc["data"] = str(Path(data_dir))
    written: dict[str, str] = {}
    for cname, doc in results.items():
        path = out_json if cname == "rvq" else _sibling(out_json, cname)
        try:
            path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
        except OSError as exc:
            raise EvalError(f"cannot write {path}: {exc}") from None
        written[cname] = str(path)
    plot = Path(plot_path) if plot_path is not None else _sibling(out_json, "rd", ".png")
    plot_rd(results, plot)
    return {"results": results, "files": written, "plot": str(plot)}


# -- plot --------------------------------------------------------------------------------------
_STYLE = {
    "rvq": ("C3", "o", "-"),
    "avif": ("C0", "s", "--"),
    "jxl": ("C2", "^", "--"),
    "jpeg": ("C7", "v", ":"),
}


def plot_rd(results: Mapping[str, Mapping], path: str | Path, title: str = "") -> Path:
    """Rate-distortion plot: bpp against PSNR and against MS-SSIM, one line per codec."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    path = Path(path)
    fig = Figure(figsize=(11, 4.3), layout="constrained")
    axes = fig.subplots(1, 2)
    for key, doc in results.items():
        r = doc["results"]
        color, marker, ls = _STYLE.get(key, (None, "o", "-"))
        for ax, metric in zip(axes, ("psnr-rgb", "ms-ssim-rgb"), strict=True):
            ys = [np.nan if v is None else v for v in r[metric]]
            label = f"RVQ ({doc['name']})" if key == "rvq" else doc["name"]
            ax.plot(r["bpp"], ys, marker=marker, ls=ls, color=color, label=label)
            if key == "rvq":
                for k, x, y in zip(r["stages"], r["bpp"], ys, strict=True):
                    ax.annotate(
                        f"{k}",
                        (x, y),
                        textcoords="offset points",
                        xytext=(4, -10),
                        fontsize=7,
                        color=color,
                    )
    n = max((doc.get("images", 0) for doc in results.values()), default=0)
    axes[0].set_ylabel("PSNR (dB, RGB)")
    axes[1].set_ylabel("MS-SSIM (RGB, 0–1)")
    for ax in axes:
        ax.set_xlabel("rate (bits per pixel, bytes sent × 8 / pixels)")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(
        title or f"Rate-distortion, mean over {n} images (RVQ points labelled by stage count)"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
