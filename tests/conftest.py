"""Fixtures shared by several test modules: a tiny random codec and a small test picture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from codec import Codec, CodecConfig, ProgressiveCodec


@pytest.fixture(scope="module")
def tiny() -> Codec:
    """A tiny untrained codec (seeded): fast to run, not meant to look good.

    Module scope: each test module gets its own copy, so one module's use cannot leak into
    another's."""
    torch.manual_seed(0)
    return Codec(ProgressiveCodec(CodecConfig.tiny()), model_id=999, name="tiny")


@pytest.fixture(scope="module")
def small_image() -> np.ndarray:
    """128×128 crop of the astronaut: an 8×8 latent, one 360-byte packet per stage."""
    return np.ascontiguousarray(data.astronaut()[64:192, 160:288])
