"""Fixtures shared by several test modules: a tiny random codec, a small test picture and one
noisy replay folder for the report tests."""

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


@pytest.fixture(scope="session")
def noisy_replay(tmp_path_factory):
    """One replay, with its folder, on a weak link with bit errors and one ARQ repeat: damaged
    copies, retransmissions and several previews, for the report tests (HTML and pcap)."""
    from satlink.replay import replay

    overrides = [
        "channel.loss.model='bit-errors'",
        "budget.eirp_dbw=0.0",
        "packets.size_bytes=40",
        "channel.arq.mode='selective-repeat'",
        "channel.arq.max_retries=1",
    ]
    out = tmp_path_factory.mktemp("noisy-replay")
    torch.manual_seed(0)  # the same tiny codec as the `tiny` fixture
    codec = Codec(ProgressiveCodec(CodecConfig.tiny()), model_id=999, name="tiny")
    image = np.ascontiguousarray(data.astronaut()[64:192, 160:288])  # as `small_image`
    result = replay("bds3-rsmc-geo", image, seed=2, codec=codec, out_dir=out, overrides=overrides)
    return out, result
