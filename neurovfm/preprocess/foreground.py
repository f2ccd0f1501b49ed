"""Foreground (air removal only, no skull stripping) and the per-token mask.

* CT: voxels above a HU threshold (config ``ct_foreground_hu``; authors' code: -500 HU).
* MRI: voxels above Otsu's threshold of the 8-bit volume (``skimage.filters.threshold_otsu``).
* Token rule: a 4 x 16 x 16 token is foreground when at least ``token_foreground_fraction`` of its
  voxels are (1.0 reproduces the authors' "any background voxel makes a background token").
"""

from __future__ import annotations

import numpy as np
from skimage.filters import threshold_otsu


def ct_foreground(hu: np.ndarray, threshold_hu: float) -> np.ndarray:
    return hu > np.float32(threshold_hu)


def mr_foreground(q8: np.ndarray) -> np.ndarray:
    """Otsu on the 8-bit volume; raises ValueError when the volume holds a single value."""
    if q8.min() == q8.max():
        raise ValueError("constant volume has no Otsu threshold")
    return q8 > threshold_otsu(q8, nbins=256)


def token_counts(mask: np.ndarray, patch) -> np.ndarray:
    """Foreground voxels per token; ``mask`` shape must be a whole number of patches."""
    ps, pr, pc = (int(p) for p in patch)
    s, r, c = mask.shape
    if s % ps or r % pr or c % pc:
        raise ValueError(f"mask shape {mask.shape} is not a multiple of the patch {tuple(patch)}")
    blocks = mask.reshape(s // ps, ps, r // pr, pr, c // pc, pc)
    return blocks.sum(axis=(1, 3, 5), dtype=np.int32)


def token_mask(mask: np.ndarray, patch, min_fraction: float) -> np.ndarray:
    """Boolean (slices/ps, rows/pr, cols/pc): tokens whose foreground fraction reaches ``min_fraction``."""
    voxels = int(np.prod([int(p) for p in patch]))
    need = int(np.ceil(min_fraction * voxels - 1e-9))
    return token_counts(mask, patch) >= max(need, 1)
