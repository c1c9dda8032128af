"""Training for the progressive RVQ codec: the trainer (:mod:`codec.train.trainer`) and its
command line (:mod:`codec.train.cli`, run as ``python -m codec.train``).

One backward pass covers every stage depth with ProGIC's weighting, or one depth per sample
drawn with those weights, on L1 + MS-SSIM. Codebooks start from k-means and follow EMAs, dead
codes are revived, and per-stage codebook use is logged. Random index erasures teach the
decoder to fill holes.

    python -m codec.train --data ../shared/data/train --out runs/main --steps 20000
    python -m codec.train --data ../shared/data/train --out runs/main --resume   # go on
    python -m codec.train export runs/main/last.ckpt codec/weights/default.pt

>>> from codec.train import TrainConfig
>>> TrainConfig(data="../shared/data/train", out="runs/main").crop_px
128
"""

from codec.train.depths import (
    depth_mask,
    depth_masks,
    parse_depth_weights,
    random_erasures,
    sample_depths,
    stage_weights,
)
from codec.train.trainer import (
    ENCODER_MODULES,
    FREEZABLE,
    PatchDiscriminator,
    TrainConfig,
    Trainer,
    freeze_parts,
    latent_diagnostics,
    msssim_window,
    validate_weights,
)

__all__ = [
    "ENCODER_MODULES",
    "FREEZABLE",
    "PatchDiscriminator",
    "TrainConfig",
    "Trainer",
    "depth_mask",
    "depth_masks",
    "freeze_parts",
    "latent_diagnostics",
    "msssim_window",
    "parse_depth_weights",
    "random_erasures",
    "sample_depths",
    "stage_weights",
    "validate_weights",
]
