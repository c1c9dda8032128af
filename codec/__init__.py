"""Learned progressive image codec: residual vector quantization after ProGIC.

>>> import codec
>>> c = codec.default_codec()
>>> code = c.encode(image)                 # doctest: +SKIP
>>> preview = c.decode(code, code.stage_mask(2))   # doctest: +SKIP
"""

from codec.api import Codec, CodecInputError, load_image
from codec.code import ProgressiveCode
from codec.model import CodecConfig, ProgressiveCodec
from codec.zoo import ModelNotFoundError, default_codec, load_codec

__all__ = [
    "Codec",
    "CodecConfig",
    "CodecInputError",
    "ModelNotFoundError",
    "ProgressiveCode",
    "ProgressiveCodec",
    "default_codec",
    "load_codec",
    "load_image",
]
