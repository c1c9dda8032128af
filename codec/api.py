"""Image in, :class:`ProgressiveCode` out, and back: the codec's public face.

>>> from codec import default_codec
>>> codec = default_codec()
>>> code = codec.encode("photo.png")                     # doctest: +SKIP
>>> preview = codec.decode(code, code.stage_mask(1))  # uint8 H×W×3  # doctest: +SKIP
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from codec.code import ProgressiveCode
from codec.model import ProgressiveCodec
from codec.refine import MAX_EFFORT, refine_indices
from codec.search import MAX_BEAM_WIDTH, beam_indices

MIN_SIDE_PX = 16
DEFAULT_MAX_PIXELS = 4096 * 4096

ImageLike = str | Path | bytes | np.ndarray | Image.Image


class CodecInputError(ValueError):
    """An image or code the codec cannot take; the message says what is wrong."""


def check_search(effort: int, beam_width: int) -> None:
    """Refuse encoder options :meth:`Codec.encode` cannot take, before any work is done.

    >>> try:
    ...     check_search(effort=8, beam_width=8)
    ... except CodecInputError as exc:
    ...     print(str(exc).split(":")[0])
    beam_width 8 needs effort 0 (got effort 8)
    """
    for name, value in (("effort", effort), ("beam_width", beam_width)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise CodecInputError(f"{name} must be an integer, got {value!r}")
    if not 0 <= effort <= MAX_EFFORT:
        raise CodecInputError(f"effort must be in 0..{MAX_EFFORT}, got {effort}")
    if not 1 <= beam_width <= MAX_BEAM_WIDTH:
        raise CodecInputError(f"beam_width must be in 1..{MAX_BEAM_WIDTH}, got {beam_width}")
    if effort and beam_width > 1:
        raise CodecInputError(
            f"beam_width {beam_width} needs effort 0 (got effort {effort}): refinement picks "
            "each stage's codes for its own preview, and a beam over its latents lost quality"
        )


def load_image(source: ImageLike, max_pixels: int | None = None) -> np.ndarray:
    """Read an image as uint8 RGB ``[H, W, 3]``; greyscale, palette and RGBA are converted.

    RGBA is composited on white, so transparent areas do not turn black. With ``max_pixels``
    a file is refused from its header, before its pixels are decoded.
    """
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    if isinstance(source, Image.Image):
        return _pil_to_rgb(source)
    if isinstance(source, bytes):
        label, fp = "<bytes>", io.BytesIO(source)
    else:
        label, fp = str(source), source
        if not Path(source).is_file():
            raise CodecInputError(f"image file not found: {label}")
    try:
        with Image.open(fp) as im:
            if max_pixels is not None and im.width * im.height > max_pixels:
                raise CodecInputError(
                    f"image {label} is {im.width}×{im.height} = {im.width * im.height} px "
                    f"(from its header), over the limit of {max_pixels} px; not decoded"
                )
            im.load()
            # Cameras store portrait shots as landscape pixels plus an EXIF rotation tag.
            return _pil_to_rgb(ImageOps.exif_transpose(im))
    except CodecInputError:
        raise
    except Image.DecompressionBombError as exc:
        raise CodecInputError(f"refusing image {label}: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise CodecInputError(f"cannot read image {label}: {exc}") from None


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    elif im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return _array_to_rgb(np.clip(arr / top * 255 + 0.5, 0, 255).astype(np.uint8))
    return np.asarray(im.convert("RGB"))


def _array_to_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise CodecInputError(f"image array must be H×W, H×W×1, H×W×3 or H×W×4, got {arr.shape}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            if not np.isfinite(arr).all():
                raise CodecInputError("image array holds NaN or infinite values")
            if arr.min() < 0 or arr.max() > 1:
                raise CodecInputError("float image arrays must lie in [0, 1]")
            arr = (arr * 255 + 0.5).astype(np.uint8)
        else:
            raise CodecInputError(f"image arrays must be uint8 or float in [0, 1], got {arr.dtype}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        alpha = arr[..., 3:].astype(np.float32) / 255
        arr = (arr[..., :3] * alpha + 255 * (1 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(arr)


class Codec:
    """A trained :class:`ProgressiveCodec` ready for inference on whole images."""

    def __init__(
        self,
        net: ProgressiveCodec,
        model_id: int,
        name: str = "",
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.net = net.eval().to(memory_format=torch.channels_last)
        self.model_id = model_id
        self.name = name or f"model-{model_id}"
        self.max_pixels = max_pixels
        self.config = net.config

    @property
    def num_stages(self) -> int:
        return self.config.num_stages

    @property
    def bits_per_index(self) -> int:
        return self.config.bits_per_index

    def latent_shape(self, image_size: tuple[int, int]) -> tuple[int, int]:
        f = self.config.downsample
        return -(-image_size[0] // f), -(-image_size[1] // f)

    def to_tensor(self, rgb: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """uint8 ``[H, W, 3]`` -> (``[1, 3, H', W']`` in [0, 1], mirror-padded to the latent grid,
        channels-last; ``(H, W)``): what the analysis transform takes."""
        h, w = rgb.shape[:2]
        if min(h, w) < MIN_SIDE_PX:
            raise CodecInputError(f"image is {w}×{h} px; each side must be at least {MIN_SIDE_PX}")
        if h * w > self.max_pixels:
            raise CodecInputError(
                f"image is {w}×{h} = {h * w} px, over the limit of "
                f"{self.max_pixels} px (raise max_pixels to allow it)"
            )
        x = torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1)[None].float().div_(255)
        f = self.config.downsample
        pad_h, pad_w = (-h) % f, (-w) % f
        # Mirror padding keeps edge statistics, so the crop back shows no seam at the border.
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else x
        return x.contiguous(memory_format=torch.channels_last), (h, w)

    def encode(self, image: ImageLike, effort: int = 0, beam_width: int = 1) -> ProgressiveCode:
        """Encode an image (path, bytes, array or PIL image) to RVQ indices.

        ``effort`` > 0 spends that many gradient steps per stage choosing that stage's
        indices for this picture (:func:`codec.refine.refine_indices`), and as many more on the
        last two stages' codes (the polish); the decoder and bitstream are unchanged. Each step
        costs one decoder pass with gradients, so an effort costs about seven times that many
        passes. ``beam_width`` > 1 (at effort 0) chooses the
        codes of all stages together, keeping that many paths through the stages
        (:func:`codec.search.beam_indices`; 8 is a good width: about 0.1 s more at 768×512).
        The two do not combine: refinement fixes each stage's codes for its own preview.
        """
        check_search(effort, beam_width)
        x, size = self.to_tensor(load_image(image, max_pixels=self.max_pixels))
        if effort:
            indices = refine_indices(self.net, x, effort, size)
        else:
            with torch.inference_mode():
                z = self.net.analysis(x)
                if beam_width > 1:
                    indices = beam_indices(self.net, z, beam_width)
                else:
                    indices = self.net.quantize(z)[0]
        indices = indices[0].numpy().astype(np.uint16)
        return ProgressiveCode(indices, size, self.bits_per_index, self.model_id)

    def _check_code(self, code: ProgressiveCode) -> None:
        if code.model_id != self.model_id:
            raise CodecInputError(
                f"code was made by model {code.model_id}, this codec is model "
                f"{self.model_id} ({self.name})"
            )
        want = (self.num_stages, *self.latent_shape(code.image_size))
        if code.indices.shape != want:
            raise CodecInputError(
                f"indices have shape {code.indices.shape}; a "
                f"{code.image_size[1]}×{code.image_size[0]} image needs {want}"
            )
        if int(code.indices.max(initial=0)) >= self.config.codebook_size:
            raise CodecInputError(
                f"index {int(code.indices.max())} is outside the codebook "
                f"(size {self.config.codebook_size})"
            )

    def _check_mask(self, code: ProgressiveCode, received: np.ndarray) -> np.ndarray:
        received = np.asarray(received)
        if received.shape != code.indices.shape:
            raise CodecInputError(
                f"received mask has shape {received.shape}, indices have {code.indices.shape}"
            )
        if received.dtype != bool:
            raise CodecInputError(f"received mask must be boolean, got {received.dtype}")
        return received

    @torch.inference_mode()
    def decode_batch(self, code: ProgressiveCode, masks: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Decode one code under several ``received`` masks in one pass (uint8 images)."""
        self._check_code(code)
        if not len(masks):
            return []
        masks = [self._check_mask(code, m) for m in masks]
        b = len(masks)
        idx = torch.from_numpy(code.indices.astype(np.int64))[None].expand(b, -1, -1, -1)
        rec = torch.from_numpy(np.stack(masks))
        out = self.net.decode_indices(idx, rec)
        h, w = code.image_size
        out = out[:, :, :h, :w].clamp(0, 1).mul(255).add_(0.5).to(torch.uint8)
        return list(out.permute(0, 2, 3, 1).contiguous().numpy())

    def decode(self, code: ProgressiveCode, received: np.ndarray | None = None) -> np.ndarray:
        """Decode to uint8 RGB ``[H, W, 3]``. ``received`` marks which indices arrived.

        A missing index at a later stage contributes nothing; a missing stage-1 index is filled
        from its neighbours. With nothing received at all the result is a flat grey guess.
        """
        mask = code.full_mask() if received is None else received
        return self.decode_batch(code, [mask])[0]
