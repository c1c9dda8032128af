"""The one type that crosses from the codec to the transport."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ProgressiveCode:
    """RVQ indices of one image plus what a decoder needs to place them.

    ``indices[s, y, x]`` is the codeword chosen at stage ``s`` (0-based) for latent position
    ``(y, x)``. Summing the codewords of stages ``0..k-1`` gives the stage-``k`` reconstruction.

    >>> import numpy as np
    >>> code = ProgressiveCode(np.zeros((5, 2, 3), np.uint16), (32, 48), 10, 1)
    >>> code.num_stages, code.latent_shape, code.num_indices
    (5, (2, 3), 30)
    """

    indices: np.ndarray  # uint16 [stages, h, w]
    image_size: tuple[int, int]  # (height_px, width_px) of the source image
    bits_per_index: int
    model_id: int

    def __post_init__(self) -> None:
        idx = np.asarray(self.indices)
        if idx.ndim != 3:
            raise ValueError(f"indices must be [stages, h, w], got shape {idx.shape}")
        if not 1 <= self.bits_per_index <= 16:
            raise ValueError(f"bits_per_index must be in 1..16, got {self.bits_per_index}")
        if idx.size and (idx.min() < 0 or idx.max() >= (1 << self.bits_per_index)):
            raise ValueError(
                f"indices must lie in [0, {1 << self.bits_per_index}) for "
                f"{self.bits_per_index}-bit codes"
            )
        if not 0 <= self.model_id <= 0xFFFF:
            raise ValueError(f"model_id must fit 16 bits, got {self.model_id}")
        h_px, w_px = self.image_size
        if h_px < 1 or w_px < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        object.__setattr__(self, "indices", idx.astype(np.uint16, copy=False))
        object.__setattr__(self, "image_size", (int(h_px), int(w_px)))

    @property
    def num_stages(self) -> int:
        return int(self.indices.shape[0])

    @property
    def latent_shape(self) -> tuple[int, int]:
        return int(self.indices.shape[1]), int(self.indices.shape[2])

    @property
    def num_indices(self) -> int:
        return int(self.indices.size)

    def full_mask(self) -> np.ndarray:
        """A ``received`` mask with every index present."""
        return np.ones(self.indices.shape, dtype=bool)

    def stage_mask(self, stages: int) -> np.ndarray:
        """A ``received`` mask holding the first ``stages`` stages."""
        mask = np.zeros(self.indices.shape, dtype=bool)
        mask[:stages] = True
        return mask
