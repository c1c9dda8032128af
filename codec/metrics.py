"""Image quality metrics on uint8 RGB images: PSNR, MS-SSIM, and optional LPIPS and DISTS.

PSNR and MS-SSIM are always available. LPIPS and DISTS need backbone weights from a file the
user points to; nothing is ever downloaded. Without a path they are unavailable and say so
(:class:`MetricUnavailableError`).

>>> import numpy as np
>>> a = np.zeros((32, 32, 3), np.uint8)
>>> psnr(a, a)
inf
>>> round(ms_ssim(a, a), 6)
1.0

**PSNR** is over all pixels and the three channels, peak 255; identical images give ``inf``.

**MS-SSIM** is ``pytorch_msssim.ms_ssim`` (Wang et al. 2003 weights, Gaussian window 11, sigma
1.5, data range 255, on the RGB channels, averaged), the same as CompressAI reports as
``ms-ssim-rgb``. It is computed here with pytorch_msssim's window, constants and formula, but
filters the local moments in channels-last depthwise convolutions and the reference's moments
once per batch: about half the CPU time (87 against 175 ms for 768×512 on one thread here). The
tests check it against ``pytorch_msssim.ms_ssim`` to 1e-5. pytorch_msssim refuses images whose
shorter side is 160 px or less, since its four downsamplings would shrink them below the window.
Smaller images keep the 11-px window and use fewer scales instead (see
:func:`ms_ssim_params`): as many as keep the coarsest scale at least 11 px, with the first
weights renormalised to sum to 1. One scale is plain SSIM; under 11 px a :class:`MetricError`
is raised. Scores with fewer than five scales are not strictly comparable with the standard
metric.

**LPIPS** (Zhang et al. 2018, v0.1) with AlexNet or VGG16 features, and **DISTS** (Ding et al.
2020) with VGG16 features and L2 pooling. The feature stacks are defined here (torchvision is not
needed) with torchvision's layer numbering, so these weight files load as published:

- backbone: a torchvision ``alexnet``/``vgg16`` ``state_dict`` (``features.N.weight`` keys; the
  classifier is ignored), a features-only ``state_dict`` (``N.weight``), or a whole ``lpips.LPIPS``
  (``net.sliceK.N.weight``) or ``DISTS`` (``stageK.N.weight``) module ``state_dict``;
- LPIPS linear layers: the ``lpips`` package's ``weights/v0.1/{alex,vgg}.pth``
  (``linK.model.1.weight``), or the same keys inside a whole-module ``state_dict``;
- DISTS: its ``weights.pt`` (``alpha`` and ``beta``, each ``[1, 1475, 1, 1]``), or inside a
  whole-module ``state_dict``.

:func:`load_perceptual` also takes a folder holding both files under their published names.
Files are read with ``torch.load(..., weights_only=True)``. DISTS images are not resized (the
DISTS reference script shrinks inputs to a 256-px short side before scoring; do that yourself if
you need its exact numbers).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim.ssim import _fspecial_gauss_1d
from torch import nn

__all__ = [
    "DISTS",
    "LPIPS",
    "MetricError",
    "MetricUnavailableError",
    "Reference",
    "load_perceptual",
    "ms_ssim",
    "ms_ssim_batch",
    "ms_ssim_params",
    "psnr",
    "psnr_batch",
    "score",
]

MIN_SIDE_PX = 11
_MSSSIM_WIN = 11
_MSSSIM_FULL_SIDE = (_MSSSIM_WIN - 1) * 16  # pytorch_msssim needs the short side above this


class MetricError(ValueError):
    """Images a metric cannot score; the message says what is wrong."""


class MetricUnavailableError(RuntimeError):
    """A metric that needs local weights was asked for without them, or they do not fit."""


# -- input checks ------------------------------------------------------------------------------
def _as_rgb(img: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(img, np.ndarray):
        raise MetricError(f"{name} must be a numpy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise MetricError(f"{name} must be uint8 (0..255), got {img.dtype}")
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise MetricError(f"{name} must be H×W×3 RGB (or H×W greyscale), got shape {img.shape}")
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return img


def _check_pair(
    reference: np.ndarray, tests: Sequence[np.ndarray] | np.ndarray, min_side: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Reference ``[H, W, 3]`` and tests (``[H, W, 3]`` or ``[N, H, W, 3]``) -> arrays."""
    ref = _as_rgb(reference, "reference")
    if isinstance(tests, np.ndarray) and tests.ndim == 4:
        stack = [tests[i] for i in range(len(tests))]
    elif isinstance(tests, np.ndarray):
        stack = [tests]
    else:
        stack = list(tests)
    if not stack:
        raise MetricError("no test images given")
    out = []
    for i, t in enumerate(stack):
        t = _as_rgb(t, f"test image {i}")
        if t.shape != ref.shape:
            raise MetricError(
                f"test image {i} has shape {t.shape}, reference has {ref.shape}; they must match"
            )
        out.append(t)
    if min(ref.shape[:2]) < min_side:
        raise MetricError(
            f"images are {ref.shape[1]}×{ref.shape[0]} px; this metric needs each "
            f"side at least {min_side} px"
        )
    return ref, np.stack(out)


def _to_tensor(batch: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> float32 ``[N, 3, H, W]`` in 0..255."""
    if not batch.flags.writeable:
        batch = batch.copy()  # torch.from_numpy warns on read-only arrays
    return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()


# -- PSNR --------------------------------------------------------------------------------------
def psnr_batch(reference: np.ndarray, tests: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """PSNR in dB of each test image against ``reference`` (``inf`` where identical)."""
    ref, stack = _check_pair(reference, tests)
    return _psnr(ref.astype(np.int16), stack)


def _psnr(ref16: np.ndarray, stack: np.ndarray) -> np.ndarray:
    # Integer differences summed in int64 are exact, so this equals the float64 mean to the
    # last bit, in a third of the time (a replay scores a preview after every packet).
    diff = (stack.astype(np.int16) - ref16[None]).reshape(len(stack), -1)
    mse = np.einsum("ij,ij->i", diff, diff, dtype=np.int64) / diff.shape[1]
    with np.errstate(divide="ignore"):
        return np.where(mse == 0, np.inf, 10 * np.log10(255.0**2 / np.maximum(mse, 1e-300)))


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB over all pixels and channels, peak 255; ``inf`` for identical images."""
    return float(psnr_batch(reference, [test])[0])


# -- MS-SSIM -----------------------------------------------------------------------------------
_MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_K1, _K2 = 0.01, 0.03


def ms_ssim_params(height: int, width: int) -> int:
    """Number of scales MS-SSIM uses for an image of this size (5 above 160 px; 1 is SSIM)."""
    side = min(height, width)
    if side < MIN_SIDE_PX:
        raise MetricError(
            f"images are {width}×{height} px; MS-SSIM needs each side at least {MIN_SIDE_PX} px"
        )
    if side > _MSSSIM_FULL_SIDE:
        return len(_MSSSIM_WEIGHTS)
    scales = 1
    while scales < len(_MSSSIM_WEIGHTS) and -(-side // 2**scales) >= _MSSSIM_WIN:
        scales += 1
    return scales


def _gauss_window(channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = _fspecial_gauss_1d(_MSSSIM_WIN, 1.5).reshape(-1)  # pytorch_msssim's own window
    w = g.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    return w.transpose(2, 3).contiguous(), w  # (vertical, horizontal)


def _blur(maps: torch.Tensor) -> torch.Tensor:
    """Valid Gaussian filtering of every channel (skipped along a side shorter than the window)."""
    wv, wh = _gauss_window(maps.shape[1])
    maps = maps.contiguous(memory_format=torch.channels_last)
    if maps.shape[2] >= _MSSSIM_WIN:  # height first, as pytorch_msssim does
        maps = F.conv2d(maps, wv, groups=maps.shape[1])
    if maps.shape[3] >= _MSSSIM_WIN:
        maps = F.conv2d(maps, wh, groups=maps.shape[1])
    return maps


def _reference_levels(x: torch.Tensor, scales: int) -> list[tuple[torch.Tensor, ...]]:
    """Per scale: the reference ``[1, C, h, w]`` and its blurred mean and second moment."""
    c, levels = x.shape[1], []
    for level in range(scales):
        mu1, xx = _blur(torch.cat([x, x * x], 1)).split(c, 1)
        levels.append((x, mu1, xx))
        if level < scales - 1:
            x = F.avg_pool2d(x, kernel_size=2, padding=[s % 2 for s in x.shape[2:]])
    return levels


def _ms_ssim_tensor(levels: list[tuple[torch.Tensor, ...]], y: torch.Tensor) -> torch.Tensor:
    """pytorch_msssim's MS-SSIM (data range 255) of a reference, given as
    :func:`_reference_levels`, against each of ``y`` ``[N, C, H, W]`` (float, 0..255) -> ``[N]``.

    Same formula, window, constants, pooling and level weights as ``pytorch_msssim.ms_ssim``.
    It is faster on CPU because the local moments are filtered in one channels-last depthwise
    convolution per side, and the reference's moments are computed once for every test.
    """
    c1, c2 = (_K1 * 255) ** 2, (_K2 * 255) ** 2
    scales = len(levels)
    c = y.shape[1]
    weights = torch.tensor(_MSSSIM_WEIGHTS[:scales], dtype=torch.float32)
    if scales < len(_MSSSIM_WEIGHTS):
        weights = weights / weights.sum()  # the five standard weights sum to 1.0001; kept
    mcs = []
    for level, (x, mu1, xx) in enumerate(levels):
        mu2, yy, xy = _blur(torch.cat([y, y * y, x * y], 1)).split(c, 1)
        mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
        cs_map = (2 * (xy - mu12) + c2) / ((xx - mu1_sq) + (yy - mu2_sq) + c2)
        if level < scales - 1:
            mcs.append(torch.relu(cs_map.mean((2, 3))))
            y = F.avg_pool2d(y, kernel_size=2, padding=[s % 2 for s in y.shape[2:]])
        else:
            ssim_map = (2 * mu12 + c1) / (mu1_sq + mu2_sq + c1) * cs_map
            mcs.append(torch.relu(ssim_map.mean((2, 3))))
    stacked = torch.stack(mcs, 0)  # [levels, N, C]
    return torch.prod(stacked ** weights.view(-1, 1, 1), 0).mean(1)


class Reference:
    """A reference picture prepared once, to score many test images against it.

    A replay scores a preview after every packet against the same original: the reference's
    conversion and its MS-SSIM moments at every scale are computed here once, not per preview.

    >>> ref = np.full((32, 32, 3), 100, np.uint8)
    >>> r = Reference(ref)
    >>> r.psnr(ref), round(r.ms_ssim(ref), 6)
    (inf, 1.0)
    """

    def __init__(self, reference: np.ndarray) -> None:
        self.image = _as_rgb(reference, "reference")
        if min(self.image.shape[:2]) < MIN_SIDE_PX:
            h, w = self.image.shape[:2]
            raise MetricError(
                f"images are {w}×{h} px; MS-SSIM needs each side at least {MIN_SIDE_PX} px"
            )
        self._ref16: np.ndarray | None = None  # made on the first PSNR
        with torch.inference_mode():
            self._levels = _reference_levels(
                _to_tensor(self.image[None]), ms_ssim_params(*self.image.shape[:2])
            )

    def _tests(self, tests: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        return _check_pair(self.image, tests)[1]

    def psnr_batch(self, tests: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """PSNR in dB of each test image (``inf`` where identical)."""
        if self._ref16 is None:
            self._ref16 = self.image.astype(np.int16)
        return _psnr(self._ref16, self._tests(tests))

    def ms_ssim_batch(self, tests: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """MS-SSIM of each test image, 4 at a time to bound memory."""
        stack = self._tests(tests)
        out = []
        with torch.inference_mode():
            for i in range(0, len(stack), 4):
                out.append(_ms_ssim_tensor(self._levels, _to_tensor(stack[i : i + 4])))
        return torch.cat(out).double().numpy()

    def psnr(self, test: np.ndarray) -> float:
        return float(self.psnr_batch([test])[0])

    def ms_ssim(self, test: np.ndarray) -> float:
        return float(self.ms_ssim_batch([test])[0])


def ms_ssim_batch(reference: np.ndarray, tests: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """MS-SSIM of each test image against ``reference`` (1.0 where identical)."""
    return Reference(reference).ms_ssim_batch(tests)


def ms_ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """MS-SSIM of ``test`` against ``reference`` (uint8 RGB, same shape), in [0, 1]."""
    return float(ms_ssim_batch(reference, [test])[0])


# -- backbones with torchvision's layer numbering ---------------------------------------------
def _alexnet_features() -> nn.Sequential:
    """torchvision ``alexnet().features`` (indices 0..12)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
    )


def _vgg16_features() -> nn.Sequential:
    """torchvision ``vgg16().features`` (configuration D, indices 0..30)."""
    layers: list[nn.Module] = []
    cin = 3
    for v in (
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        "M",
    ):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU()]
            cin = int(v)
    return nn.Sequential(*layers)


_BACKBONES: dict[str, Callable[[], nn.Sequential]] = {
    "alex": _alexnet_features,
    "vgg": _vgg16_features,
}
# Feature taps (index of the ReLU whose output is used) and their widths.
_LPIPS_TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}
_LPIPS_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
_DISTS_CHANNELS = (3, 64, 128, 256, 512, 512)

_BACKBONE_KEY = re.compile(
    r"^(?:module\.)?(?:features\.|net\.slice\d+\.|stage\d+\.)?(\d+)\.(weight|bias)$"
)
_LIN_KEY = re.compile(r"^(?:module\.)?lins?\.?(\d+)\.model\.\d+\.weight$")


def _load_file(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise MetricUnavailableError(f"{what}: no file at {p}")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise MetricUnavailableError(f"{what}: cannot read {p}: {exc}") from None
    if (
        isinstance(blob, Mapping)
        and "state_dict" in blob
        and isinstance(blob["state_dict"], Mapping)
    ):
        blob = blob["state_dict"]
    if not isinstance(blob, Mapping):
        raise MetricUnavailableError(
            f"{what}: {p} does not hold a state_dict (got {type(blob).__name__})"
        )
    return {str(k): v for k, v in blob.items() if isinstance(v, torch.Tensor)}


def _load_backbone(
    features: nn.Sequential, blob: Mapping[str, torch.Tensor], path: str | Path, what: str
) -> None:
    state: dict[str, torch.Tensor] = {}
    for key, value in blob.items():
        m = _BACKBONE_KEY.match(key)
        if m and int(m.group(1)) < len(features):
            state[f"{m.group(1)}.{m.group(2)}"] = value
    want = set(features.state_dict())
    missing = sorted(want - set(state), key=lambda k: (int(k.split(".")[0]), k))
    if missing:
        raise MetricUnavailableError(
            f"{what}: {path} lacks backbone weights {', '.join(missing[:4])}"
            f"{' ...' if len(missing) > 4 else ''} (expected a torchvision state_dict with "
            "features.N.weight keys)"
        )
    try:
        features.load_state_dict({k: state[k] for k in want})
    except RuntimeError as exc:
        raise MetricUnavailableError(f"{what}: {path} does not fit the backbone: {exc}") from None


def _prepare(
    reference: np.ndarray, tests: Sequence[np.ndarray] | np.ndarray, min_side: int
) -> tuple[torch.Tensor, torch.Tensor]:
    ref, stack = _check_pair(reference, tests, min_side=min_side)
    x = _to_tensor(ref[None]).div_(255).expand(len(stack), -1, -1, -1)
    return x, _to_tensor(stack).div_(255)


def _run_taps(features: nn.Sequential, x: torch.Tensor, taps: Sequence[int]) -> list[torch.Tensor]:
    out = []
    for i, layer in enumerate(features):
        x = layer(x)
        if i in taps:
            out.append(x)
            if i == taps[-1]:
                break
    return out


class LPIPS:
    """LPIPS v0.1 distance (0 for identical images, larger is more different).

    >>> lp = LPIPS("alexnet.pth", "lpips_alex.pth", net="alex")     # doctest: +SKIP
    >>> lp(reference, preview)                                       # doctest: +SKIP
    0.231

    ``backbone_weights`` is a torchvision ``alexnet`` or ``vgg16`` state_dict (or a whole
    ``lpips.LPIPS`` state_dict, which also holds the linear layers); ``lin_weights`` the LPIPS
    linear layers (``weights/v0.1/alex.pth`` or ``vgg.pth``). Omit it only when the backbone file
    holds them.
    """

    # The LPIPS ScalingLayer, applied to inputs in [-1, 1].
    _SHIFT = (-0.030, -0.088, -0.188)
    _SCALE = (0.458, 0.448, 0.450)

    def __init__(
        self, backbone_weights: str | Path, lin_weights: str | Path | None = None, net: str = "alex"
    ) -> None:
        if net not in _BACKBONES:
            raise MetricUnavailableError(
                f"LPIPS net must be one of {sorted(_BACKBONES)}, got {net!r}"
            )
        self.net = net
        what = f"LPIPS-{net}"
        self.features = _BACKBONES[net]().eval()
        blob = _load_file(backbone_weights, what)
        _load_backbone(self.features, blob, backbone_weights, what)
        lin_blob = _load_file(lin_weights, what) if lin_weights is not None else blob
        lin_path = lin_weights if lin_weights is not None else backbone_weights
        lins: dict[int, torch.Tensor] = {}
        for key, value in lin_blob.items():
            m = _LIN_KEY.match(key)
            if m:
                lins[int(m.group(1))] = value
        self.lins: list[torch.Tensor] = []
        for k, ch in enumerate(_LPIPS_CHANNELS[net]):
            if k not in lins:
                raise MetricUnavailableError(
                    f"{what}: {lin_path} lacks the linear layer lin{k}.model.1.weight "
                    "(pass lin_weights=PATH to the LPIPS v0.1 weights file)"
                )
            w = lins[k].float()
            if w.numel() != ch:
                raise MetricUnavailableError(
                    f"{what}: lin{k} in {lin_path} has {w.numel()} "
                    f"weights, the {net} backbone needs {ch}"
                )
            self.lins.append(w.reshape(1, ch, 1, 1))
        self.taps = _LPIPS_TAPS[net]
        self._shift = torch.tensor(self._SHIFT).view(1, 3, 1, 1)
        self._scale = torch.tensor(self._SCALE).view(1, 3, 1, 1)

    def _feats(self, x01: torch.Tensor) -> list[torch.Tensor]:
        x = (x01 * 2 - 1 - self._shift) / self._scale
        feats = _run_taps(self.features, x, self.taps)
        return [f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10) for f in feats]

    def batch(self, reference: np.ndarray, tests: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Distance of each test image to ``reference``."""
        x, y = _prepare(reference, tests, min_side=32 if self.net == "alex" else 16)
        with torch.inference_mode():
            fx, fy = self._feats(x[:1]), self._feats(y)
            total = torch.zeros(len(y), dtype=torch.float64)
            for a, b, w in zip(fx, fy, self.lins, strict=True):
                total += ((a - b).pow(2) * w).sum(1).mean((1, 2)).double()
        return total.numpy()

    def __call__(self, reference: np.ndarray, test: np.ndarray) -> float:
        return float(self.batch(reference, [test])[0])


class _L2Pool(nn.Module):
    """DISTS's L2 pooling: sqrt of a Hanning-weighted 3×3 average of squares, stride 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        a = torch.tensor(np.hanning(5)[1:-1], dtype=torch.float32)
        g = a[:, None] * a[None, :]
        self.register_buffer("filter", (g / g.sum())[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x * x, self.filter, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


class DISTS:
    """DISTS distance (about 0 for identical images, larger is more different).

    ``vgg_weights`` is a torchvision ``vgg16`` state_dict (or a whole DISTS module state_dict,
    which also holds ``alpha`` and ``beta``); ``dists_weights`` the DISTS ``weights.pt``.
    """

    _MEAN = (0.485, 0.456, 0.406)
    _STD = (0.229, 0.224, 0.225)

    def __init__(self, vgg_weights: str | Path, dists_weights: str | Path | None = None) -> None:
        what = "DISTS"
        vgg = _vgg16_features()
        blob = _load_file(vgg_weights, what)
        _load_backbone(vgg, blob, vgg_weights, what)
        ab_blob = _load_file(dists_weights, what) if dists_weights is not None else blob
        ab_path = dists_weights if dists_weights is not None else vgg_weights
        n = sum(_DISTS_CHANNELS)
        ab = {}
        for name in ("alpha", "beta"):
            key = next((k for k in ab_blob if k.split(".")[-1] == name), None)
            if key is None:
                raise MetricUnavailableError(
                    f"{what}: {ab_path} lacks {name!r} "
                    "(pass dists_weights=PATH to DISTS weights.pt)"
                )
            if ab_blob[key].numel() != n:
                raise MetricUnavailableError(
                    f"{what}: {name} in {ab_path} has {ab_blob[key].numel()} values, expected {n}"
                )
            ab[name] = ab_blob[key].float().reshape(1, n, 1, 1)
        self.alpha, self.beta = ab["alpha"], ab["beta"]
        # Stages as in DISTS: VGG16 with each max-pool replaced by L2 pooling.
        f = list(vgg)
        self.stages = nn.ModuleList(
            [
                nn.Sequential(*f[0:4]),
                nn.Sequential(_L2Pool(64), *f[5:9]),
                nn.Sequential(_L2Pool(128), *f[10:16]),
                nn.Sequential(_L2Pool(256), *f[17:23]),
                nn.Sequential(_L2Pool(512), *f[24:30]),
            ]
        ).eval()
        self._mean = torch.tensor(self._MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(self._STD).view(1, 3, 1, 1)

    def _feats(self, x01: torch.Tensor) -> list[torch.Tensor]:
        h = (x01 - self._mean) / self._std
        feats = [x01]
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        return feats

    def batch(self, reference: np.ndarray, tests: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Distance of each test image to ``reference``."""
        x, y = _prepare(reference, tests, min_side=16)
        c1 = c2 = 1e-6
        with torch.inference_mode():
            fx = [f.expand(len(y), -1, -1, -1) for f in self._feats(x[:1])]
            fy = self._feats(y)
            w_sum = self.alpha.sum() + self.beta.sum()
            alpha = torch.split(self.alpha / w_sum, _DISTS_CHANNELS, dim=1)
            beta = torch.split(self.beta / w_sum, _DISTS_CHANNELS, dim=1)
            dist1 = dist2 = 0.0
            for k in range(len(_DISTS_CHANNELS)):
                xm = fx[k].mean((2, 3), keepdim=True)
                ym = fy[k].mean((2, 3), keepdim=True)
                s1 = (2 * xm * ym + c1) / (xm**2 + ym**2 + c1)
                dist1 = dist1 + (alpha[k] * s1).sum(1, keepdim=True)
                xv = ((fx[k] - xm) ** 2).mean((2, 3), keepdim=True)
                yv = ((fy[k] - ym) ** 2).mean((2, 3), keepdim=True)
                cov = (fx[k] * fy[k]).mean((2, 3), keepdim=True) - xm * ym
                s2 = (2 * cov + c2) / (xv + yv + c2)
                dist2 = dist2 + (beta[k] * s2).sum(1, keepdim=True)
            out = 1 - (dist1 + dist2).flatten()
        return out.double().numpy()

    def __call__(self, reference: np.ndarray, test: np.ndarray) -> float:
        return float(self.batch(reference, [test])[0])


# File names looked for when a folder is given: (backbone globs, extra-file globs).
_FOLDER_NAMES = {
    "alex": (("alexnet*.pth", "alexnet*.pt"), ("alex.pth", "lpips*alex*.pth", "lpips*alex*.pt")),
    "vgg": (("vgg16*.pth", "vgg16*.pt"), ("vgg.pth", "lpips*vgg*.pth", "lpips*vgg*.pt")),
    "dists": (("vgg16*.pth", "vgg16*.pt"), ("weights.pt", "dists*.pt", "dists*.pth")),
}


def _find_in_folder(folder: Path, globs: Sequence[str], what: str) -> Path:
    found = sorted({p for g in globs for p in folder.glob(g) if p.is_file()})
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise MetricUnavailableError(
            f"{what}: expected exactly one file matching {' or '.join(globs)} in {folder}, "
            f"found {names}"
        )
    return found[0]


def load_perceptual(
    name: str, weights: str | Path | None = None, extra_weights: str | Path | None = None
) -> LPIPS | DISTS:
    """Load ``"lpips"`` (AlexNet), ``"lpips-vgg"`` or ``"dists"`` from local files only.

    ``weights`` is the backbone state_dict (or a whole-module state_dict that also holds the
    rest), ``extra_weights`` the LPIPS linear layers or the DISTS alpha/beta file. ``weights``
    may also be a folder holding both under their published names: ``alexnet*.pth`` or
    ``vgg16*.pth`` (torchvision) with ``alex.pth`` / ``vgg.pth`` (LPIPS v0.1) or ``weights.pt``
    (DISTS). With no ``weights`` the metric is unavailable.
    """
    kinds = {"lpips": "alex", "lpips-alex": "alex", "lpips-vgg": "vgg", "dists": "dists"}
    key = name.lower()
    if key not in kinds:
        raise MetricUnavailableError(f"unknown metric {name!r}; choose from {sorted(kinds)}")
    kind = kinds[key]
    if weights is None:
        if kind == "dists":
            hint = "a torchvision vgg16 state_dict and the DISTS weights.pt (alpha, beta)"
        else:
            hint = (
                f"a torchvision {'vgg16' if kind == 'vgg' else 'alexnet'} state_dict "
                f"and the LPIPS v0.1 {kind}.pth linear layers"
            )
        raise MetricUnavailableError(
            f"{name} needs local weights: pass the path to {hint} (or a folder holding "
            "both). Nothing is downloaded."
        )
    if Path(weights).is_dir():
        folder = Path(weights)
        backbone_globs, extra_globs = _FOLDER_NAMES[kind]
        weights = _find_in_folder(folder, backbone_globs, name)
        if extra_weights is None:
            extra_weights = _find_in_folder(folder, extra_globs, name)
    if kind == "dists":
        return DISTS(weights, extra_weights)
    return LPIPS(weights, extra_weights, net=kind)


def score(
    reference: np.ndarray, test: np.ndarray, perceptual: Mapping[str, LPIPS | DISTS] | None = None
) -> dict[str, float]:
    """PSNR and MS-SSIM, plus any loaded perceptual metrics, as ``{"psnr": ..., ...}``."""
    out = {"psnr": psnr(reference, test), "ms-ssim": ms_ssim(reference, test)}
    for name, metric in (perceptual or {}).items():
        out[name] = metric(reference, test)
    return out
