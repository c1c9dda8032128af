"""Which preview depths a training step decodes, and which indices it pretends were lost.

ProGIC's weighting gives each of the first S-1 depths ``p / (S - 1)`` and the full depth
``1 - p``; a step decodes every depth with those weights (``depth_masks``) or one depth per
sample drawn with them (``sample_depths``, ``depth_mask``). Random erasures teach the decoder
to fill the holes that lost packets leave.

>>> [round(w, 3) for w in stage_weights(5, 0.4).tolist()]
[0.1, 0.1, 0.1, 0.1, 0.6]
>>> received = torch.ones(1, 3, 2, 2, dtype=torch.bool)
>>> depth_mask(received, torch.tensor([2]))[0, :, 0, 0].tolist()
[True, True, False]
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "depth_mask",
    "depth_masks",
    "parse_depth_weights",
    "random_erasures",
    "sample_depths",
    "stage_weights",
]


def stage_weights(num_stages: int, p: float) -> torch.Tensor:
    """ProGIC weighting: the first N-1 depths share p, the full depth gets 1-p."""
    if num_stages == 1:
        return torch.ones(1)
    return torch.tensor([p / (num_stages - 1)] * (num_stages - 1) + [1 - p])


def parse_depth_weights(text: str, num_stages: int | None = None) -> torch.Tensor:
    """``"w1,...,wS"`` -> normalised weights ``[S]``, for a draw ProGIC's two shares cannot
    give (say, stage 1's share kept while full depth takes the middle depths' share).

    >>> [round(w, 3) for w in parse_depth_weights("1,1,2,0,4").tolist()]
    [0.125, 0.125, 0.25, 0.0, 0.5]
    """
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"depth weights must be comma-separated numbers, got {text!r}") from None
    if not all(math.isfinite(v) and v >= 0 for v in values) or sum(values) <= 0:
        raise ValueError(
            f"depth weights must be finite, non-negative, with a positive sum, got {text!r}"
        )
    if num_stages is not None and len(values) != num_stages:
        raise ValueError(
            f"depth weights name {len(values)} depths, the model has {num_stages}: {text!r}"
        )
    weights = torch.tensor(values)
    return weights / weights.sum()


def depth_masks(received: torch.Tensor) -> torch.Tensor:
    """``[B, S, h, w]`` -> ``[S*B, S, h, w]``: depth k keeps stages < k (depth-major order)."""
    s = received.shape[1]
    # Row k-1 keeps stages 0..k-1; built where ``received`` lives (a GPU run validates there).
    keep = torch.tril(torch.ones(s, s, dtype=torch.bool, device=received.device))
    return (received[None] & keep[:, None, :, None, None]).flatten(0, 1)


def sample_depths(b: int, weights: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One depth in ``1..S`` per sample, drawn with ``weights`` ``[S]``; returns ``[B]``."""
    return torch.multinomial(weights, b, replacement=True, generator=gen) + 1


def depth_mask(received: torch.Tensor, depths: torch.Tensor) -> torch.Tensor:
    """``[B, S, h, w]`` and depths ``[B]`` -> ``[B, S, h, w]`` keeping stages < depth."""
    stages = torch.arange(received.shape[1], device=received.device)
    return received & (stages[None] < depths[:, None].to(received.device))[:, :, None, None]


def random_erasures(
    b: int, s: int, h: int, w: int, prob: float, max_rate: float, gen: torch.Generator
) -> torch.Tensor:
    """``[B, S, h, w]`` received flags: a share ``prob`` of the samples lose each index with
    their own rate, drawn uniform in ``[0, max_rate)``; the rest lose none."""
    received = torch.ones(b, s, h, w, dtype=torch.bool)
    holed = torch.rand(b, generator=gen) < prob
    rates = torch.rand(b, generator=gen) * max_rate
    drop = torch.rand(b, s, h, w, generator=gen) < rates[:, None, None, None]
    received[holed] &= ~drop[holed]
    return received
