"""iBOT masks of the global crops (DINOv2's collate): ``mask_probability`` of the global-crop images of a batch are
masked, image ``i`` of them with a ratio drawn uniformly from the ``i``-th of equal bins of ``mask_ratio`` (so
the ratios are spread over the range), the others not at all; the order of the images is then shuffled. A mask
is a union of random rectangles of patches (BEiT's block-wise masking: area at least 4 patches, aspect ratio
between 0.3 and 1 / 0.3) grown until exactly ``round(ratio x patches)`` patches are masked: only the last
rectangle may be cut (random cells of it)."""

from __future__ import annotations

import math

import numpy as np

MIN_BLOCK = 4
ASPECT = (0.3, 1 / 0.3)


def block_mask(side: int, n_masked: int, rng: np.random.Generator) -> np.ndarray:
    """A ``[side, side]`` bool mask with exactly ``n_masked`` True cells, made of rectangles."""
    total = side * side
    if not 0 <= n_masked <= total:
        raise ValueError(f"cannot mask {n_masked} of {total} patches")
    mask = np.zeros((side, side), dtype=bool)
    while int(mask.sum()) < n_masked:
        left = n_masked - int(mask.sum())
        area = rng.uniform(MIN_BLOCK, max(MIN_BLOCK, left))
        aspect = math.exp(rng.uniform(math.log(ASPECT[0]), math.log(ASPECT[1])))
        h = int(np.clip(round(math.sqrt(area * aspect)), 1, side))
        w = int(np.clip(round(math.sqrt(area / aspect)), 1, side))
        top, lft = int(rng.integers(0, side - h + 1)), int(rng.integers(0, side - w + 1))
        block = np.zeros_like(mask)
        block[top : top + h, lft : lft + w] = True
        new = np.flatnonzero(block & ~mask)
        if new.size > left:  # the last rectangle: cut to the count
            new = rng.choice(new, left, replace=False)
        mask.reshape(-1)[new] = True
    return mask


def ibot_masks(
    n_images: int, side: int, mask_probability: float, ratio: tuple[float, float], rng: np.random.Generator
) -> np.ndarray:
    """``[n_images, side * side]`` bool: True where the student's patch is replaced by the mask token."""
    out = np.zeros((n_images, side * side), dtype=bool)
    n_masked_images = int(n_images * float(mask_probability))
    bins = np.linspace(float(ratio[0]), float(ratio[1]), n_masked_images + 1)
    for i in range(n_masked_images):
        r = rng.uniform(bins[i], bins[i + 1])
        out[i] = block_mask(side, int(round(r * side * side)), rng).reshape(-1)
    return out[rng.permutation(n_images)]
