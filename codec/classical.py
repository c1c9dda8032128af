"""Classical image codecs (AVIF, JPEG XL, JPEG) and fitting a file to a byte budget.

Replays and sweeps send these files as the baseline against the progressive code; the receiver
decodes them with :func:`decode_file`; :mod:`codec.eval` scores them against the RVQ codec.

>>> from codec.classical import fit_classical, decode_file
>>> fit = fit_classical(image, "avif", 1920)                     # doctest: +SKIP
>>> picture = decode_file(fit.data, "image/avif")                 # doctest: +SKIP

**Fitting** (:func:`fit_classical_budgets`), per image and budget:

1. for each downscale factor in :data:`SCALES` (1, 2, 3, 4, 6, 8: the image is shrunk with
   Pillow's antialiased bicubic filter, coded, decoded and enlarged back with bicubic), find the
   highest quality setting whose file fits (:func:`search_quality`: interpolation search on
   log size, a handful of encodes; encodes are cached per image so the budgets share them);
2. score each scale's file (PSNR and MS-SSIM after enlarging). Factors are tried from 1 up and
   the search stops once a factor fits at the top quality or two successive factors score worse
   on both metrics;
3. choose the file best by ``select`` (MS-SSIM by default); ``best_psnr`` and ``best_ms_ssim``
   keep the best of each metric over the candidates.

When nothing fits at any scale it is a **miss**: the receiver has nothing, so it scores as a
mid-grey image (:data:`MISS_GREY`).

**Settings.** AVIF: libavif (libaom) via imagecodecs, 4:4:4, speed 6 (the libavif default; speed
8 is four times faster but loses 0.5 to 1 dB here, which would flatter the RVQ codec), quality
0..100. JPEG XL: libjxl, quality 0..100 (distance 25..0), effort 7. JPEG: libjpeg, quality 1..100,
optimised Huffman tables, 4:2:0. One thread per encoder.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import imagecodecs
import numpy as np
from PIL import Image

from codec.api import load_image
from codec.metrics import ms_ssim_batch, psnr_batch

__all__ = [
    "CLASSICAL_CODECS",
    "MISS_GREY",
    "SCALES",
    "ClassicalCodec",
    "ClassicalError",
    "ClassicalFit",
    "FitCache",
    "classical_codec",
    "decode_file",
    "fit_classical",
    "fit_classical_budgets",
    "search_quality",
]

SCALES: tuple[int, ...] = (1, 2, 3, 4, 6, 8)
MISS_GREY = 128  # what a receiver with no picture is scored as (a mid-grey image)
MIN_SIDE_PX = 16
AVIF_SPEED = 6  # libavif's default; speed 8 loses about 0.5-1 dB here
AVIF_SETTINGS = f"libavif {imagecodecs.avif_version()}, 4:4:4, speed {AVIF_SPEED}"


class ClassicalError(ValueError):
    """A classical encode, decode or fit that cannot run as asked; the message says why."""


@dataclass(frozen=True)
class ClassicalCodec:
    """A classical image codec with one integer quality knob (higher = larger file)."""

    name: str
    label: str
    encode: Callable[[np.ndarray, int], bytes]
    decode: Callable[[bytes], np.ndarray]
    quality_min: int
    quality_max: int
    settings: str = ""
    doubling_q: float = 14.0  # rough quality steps per doubling of file size (first probe)
    content_type: str = ""  # MIME type, as satlink.packets.CONTENT_TYPES names it


def _avif_encode(rgb: np.ndarray, q: int) -> bytes:
    return bytes(
        imagecodecs.avif_encode(rgb, level=q, speed=AVIF_SPEED, pixelformat="yuv444", numthreads=1)
    )


def _jxl_encode(rgb: np.ndarray, q: int) -> bytes:
    return bytes(imagecodecs.jpegxl_encode(rgb, level=q, effort=7, numthreads=1))


def _jpeg_encode(rgb: np.ndarray, q: int) -> bytes:
    return bytes(imagecodecs.jpeg8_encode(rgb, level=q, optimize=True, subsampling="420"))


def _rgb_decoder(fn: Callable[[bytes], np.ndarray]) -> Callable[[bytes], np.ndarray]:
    def decode(data: bytes) -> np.ndarray:
        out = np.asarray(fn(data))
        if out.ndim == 2:
            out = np.repeat(out[..., None], 3, axis=2)
        return np.ascontiguousarray(out[..., :3])

    return decode


CLASSICAL_CODECS: dict[str, ClassicalCodec] = {
    "avif": ClassicalCodec(
        "avif",
        "AVIF",
        _avif_encode,
        _rgb_decoder(imagecodecs.avif_decode),
        0,
        100,
        AVIF_SETTINGS,
        14.0,
        "image/avif",
    ),
    "jxl": ClassicalCodec(
        "jxl",
        "JPEG XL",
        _jxl_encode,
        _rgb_decoder(imagecodecs.jpegxl_decode),
        0,
        100,
        f"libjxl {imagecodecs.jpegxl_version()}, effort 7",
        20.0,
        "image/jxl",
    ),
    "jpeg": ClassicalCodec(
        "jpeg",
        "JPEG",
        _jpeg_encode,
        _rgb_decoder(imagecodecs.jpeg8_decode),
        1,
        100,
        f"libjpeg {imagecodecs.jpeg8_version()}, 4:2:0, optimised",
        10.0,
        "image/jpeg",
    ),
}


@dataclass
class ClassicalFit:
    """The best file of one classical codec within a byte budget, and how it scores.

    ``psnr`` and ``ms_ssim`` score the chosen file; ``best_psnr`` and ``best_ms_ssim`` are the
    best of each over all fitting candidates (one per scale), which may be different files.
    """

    codec: str
    budget_bytes: int
    image: np.ndarray  # uint8 [H, W, 3] as the receiver sees it (mid-grey on a miss)
    psnr: float
    ms_ssim: float
    data: bytes | None = None  # the file; None on a miss
    scale: int | None = None
    quality: int | None = None
    encode_s: float = 0.0
    decode_s: float = 0.0
    best_psnr: float = math.nan
    best_ms_ssim: float = math.nan
    candidates: list[dict] = field(default_factory=list)  # scale, quality, bytes, psnr, ms-ssim

    def __post_init__(self) -> None:
        if math.isnan(self.best_psnr):
            self.best_psnr = self.psnr
        if math.isnan(self.best_ms_ssim):
            self.best_ms_ssim = self.ms_ssim

    @property
    def miss(self) -> bool:
        return self.data is None

    @property
    def size_bytes(self) -> int:
        return 0 if self.data is None else len(self.data)


@dataclass
class _Trial:
    data: bytes
    encode_s: float
    scores: tuple[float, float, float, np.ndarray] | None = None  # psnr, ms-ssim, dec_s, img


@dataclass
class FitCache:
    """Encodes (and decodes) of one image by one codec, shared across budgets."""

    small: dict[int, np.ndarray] = field(default_factory=dict)  # scale -> shrunk image
    trials: dict[tuple[int, int], _Trial] = field(default_factory=dict)  # (scale, q) -> trial


def _resize(rgb: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    if (rgb.shape[1], rgb.shape[0]) == size_wh:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize(size_wh, Image.Resampling.BICUBIC))


def _check_image(image: np.ndarray) -> np.ndarray:
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] != 3
    ):
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ClassicalError(f"image must be uint8 H×W×3, got {dtype} with shape {shape}")
    if min(image.shape[:2]) < MIN_SIDE_PX:
        raise ClassicalError(
            f"image is {image.shape[1]}×{image.shape[0]} px; scoring needs each "
            f"side at least {MIN_SIDE_PX} px"
        )
    return np.ascontiguousarray(image)


def fit_classical_budgets(
    image: np.ndarray,
    codec: str | ClassicalCodec,
    budgets_bytes: Sequence[int],
    scales: Sequence[int] = SCALES,
    select: str = "ms-ssim",
    cache: FitCache | None = None,
) -> list[ClassicalFit]:
    """Best file of ``codec`` within each budget (see the module docstring for the search).

    ``select`` (``"ms-ssim"`` or ``"psnr"``) decides which candidate is the chosen file.
    """
    image = _check_image(image)
    cc = classical_codec(codec) if isinstance(codec, str) else codec
    if select not in ("ms-ssim", "psnr"):
        raise ClassicalError(f"select must be 'ms-ssim' or 'psnr', got {select!r}")
    if not scales or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in scales):
        raise ClassicalError(f"scales must be positive integers, got {list(scales)}")
    bad = [b for b in budgets_bytes if int(b) < 1]
    if bad:
        raise ClassicalError(f"byte budgets must be positive, got {bad}")
    cache = cache or FitCache()
    h, w = image.shape[:2]

    def trial(scale: int, q: int) -> _Trial:
        key = (scale, q)
        if key not in cache.trials:
            if scale not in cache.small:
                size = (max(1, round(w / scale)), max(1, round(h / scale)))
                cache.small[scale] = _resize(image, size)
            t0 = time.perf_counter()
            data = cc.encode(cache.small[scale], q)
            cache.trials[key] = _Trial(data, time.perf_counter() - t0)
        return cache.trials[key]

    def scored(scale: int, q: int) -> tuple[float, float, float, np.ndarray]:
        t = trial(scale, q)
        if t.scores is None:
            t0 = time.perf_counter()
            small = cc.decode(t.data)
            dec_s = time.perf_counter() - t0
            big = _resize(small, (w, h))
            t.scores = (
                float(psnr_batch(image, [big])[0]),
                float(ms_ssim_batch(image, [big])[0]),
                dec_s,
                big,
            )
        return t.scores

    fits = []
    for budget in (int(b) for b in budgets_bytes):
        candidates: list[tuple[int, int]] = []
        declines = 0
        for scale in sorted(set(scales)):
            known = {q: len(t.data) for (s, q), t in cache.trials.items() if s == scale}
            q = search_quality(
                lambda q, s=scale: len(trial(s, q).data),
                cc.quality_min,
                cc.quality_max,
                budget,
                known,
                cc.doubling_q,
            )
            if q is None:
                continue  # not even the lowest quality fits at this scale
            p, m = scored(scale, q)[:2]
            if candidates:
                prev_p, prev_m = scored(*candidates[-1])[:2]
                declines = declines + 1 if (p < prev_p and m < prev_m) else 0
            candidates.append((scale, q))
            if q == cc.quality_max or declines >= 2:
                break  # a still smaller picture will not do better
        if not candidates:
            grey = np.full_like(image, MISS_GREY)
            fits.append(
                ClassicalFit(
                    cc.name,
                    budget,
                    grey,
                    float(psnr_batch(image, [grey])[0]),
                    float(ms_ssim_batch(image, [grey])[0]),
                )
            )
            continue
        key_idx = 1 if select == "ms-ssim" else 0
        best = max(candidates, key=lambda sq: scored(*sq)[key_idx])
        p, m, dec_s, big = scored(*best)
        listed = [
            {
                "scale": s,
                "quality": q,
                "bytes": len(trial(s, q).data),
                "psnr": scored(s, q)[0],
                "ms-ssim": scored(s, q)[1],
            }
            for s, q in candidates
        ]
        fits.append(
            ClassicalFit(
                cc.name,
                budget,
                big,
                p,
                m,
                trial(*best).data,
                best[0],
                best[1],
                trial(*best).encode_s,
                dec_s,
                best_psnr=max(c["psnr"] for c in listed),
                best_ms_ssim=max(c["ms-ssim"] for c in listed),
                candidates=listed,
            )
        )
    return fits


def search_quality(
    size_of: Callable[[int], int],
    q_min: int,
    q_max: int,
    budget: int,
    known: Mapping[int, int],
    doubling_q: float = 14.0,
) -> int | None:
    """Highest quality in ``q_min..q_max`` whose size fits ``budget`` (None if ``q_min`` does not).

    Sizes grow roughly exponentially with quality, so the next probe interpolates log(size)
    between the bracket ends (regula falsi), falling back to bisection when that makes poor
    progress. While no setting is known not to fit, the probe extrapolates from the best
    fitting one (slope from two fits, else assuming the size doubles every ``doubling_q``
    steps). Sizes already measured (``known``) narrow the bracket first, so successive budgets
    cost few new encodes. Assumes size grows with quality; where it
    does not, the result is a fitting setting at a local boundary.
    """
    sizes = dict(known)

    def size(q: int) -> int:
        if q not in sizes:
            sizes[q] = size_of(q)
        return sizes[q]

    if size(q_min) > budget:
        return None
    lo = max(q for q, s in sizes.items() if s <= budget and q >= q_min)
    above = [q for q, s in sizes.items() if s > budget and lo < q <= q_max]
    hi = min(above) if above else q_max + 1  # q_max + 1: "does not fit", never encoded
    bisect = False
    while hi - lo > 1:
        width = hi - lo
        if hi > q_max:
            # Extrapolate past the best fit, from the slope of two fits or the prior, and
            # overshoot a little so the next probe most likely brackets the boundary.
            lower = [q for q, s in sizes.items() if q < lo and 0 < s < sizes[lo]]
            per_doubling = doubling_q
            if lower:
                q0 = max(lower)
                per_doubling = (lo - q0) / max(math.log2(sizes[lo] / sizes[q0]), 1e-3)
                per_doubling = min(max(per_doubling, 1.0), 4 * doubling_q)
            step = 1.2 * per_doubling * math.log2(budget / sizes[lo])
            q = min(q_max, lo + max(1, round(step)))
        elif bisect:
            q = (lo + hi) // 2
        else:
            s_lo, s_hi = math.log(sizes[lo]), math.log(sizes[hi])
            frac = (math.log(budget) - s_lo) / (s_hi - s_lo) if s_hi > s_lo else 0.5
            q = min(hi - 1, max(lo + 1, lo + round(frac * width)))
        if size(q) <= budget:
            lo = q
        else:
            hi = q
        bisect = hi <= q_max and hi - lo > width // 2
    return lo


def fit_classical(
    image: np.ndarray,
    codec: str | ClassicalCodec,
    budget_bytes: int,
    scales: Sequence[int] = SCALES,
    select: str = "ms-ssim",
) -> ClassicalFit:
    """Best file of ``codec`` (``"avif"``, ``"jxl"``, ``"jpeg"``) within ``budget_bytes``.

    >>> fit = fit_classical(image, "avif", 1920)                     # doctest: +SKIP
    >>> fit.size_bytes <= 1920, fit.scale, fit.quality, fit.ms_ssim  # doctest: +SKIP
    (True, 4, 31, 0.83)
    """
    return fit_classical_budgets(image, codec, [budget_bytes], scales, select)[0]


def classical_codec(name: str) -> ClassicalCodec:
    """The classical codec called ``name`` (``"avif"``, ``"jxl"``, ``"jpeg"``)."""
    if name not in CLASSICAL_CODECS:
        raise ClassicalError(
            f"unknown classical codec {name!r}; choose from {', '.join(CLASSICAL_CODECS)}"
        )
    return CLASSICAL_CODECS[name]


def decode_file(data: bytes, content_type: str) -> np.ndarray:
    """Decode a received image file to uint8 RGB: AVIF, JPEG XL and JPEG with the decoders the
    fit scored with (so a receiver sees what the fit promised), PNG and WebP with Pillow."""
    cc = next((c for c in CLASSICAL_CODECS.values() if c.content_type == content_type), None)
    if cc is None:
        try:
            return load_image(bytes(data))
        except Exception as exc:  # Pillow raises several classes for a bad file
            raise ClassicalError(f"cannot decode {content_type} payload: {exc}") from None
    try:
        return cc.decode(bytes(data))
    except Exception as exc:  # imagecodecs raises its own error classes per codec
        raise ClassicalError(f"cannot decode {content_type} payload: {exc}") from None
