"""Intensity windows: map raw values to [0, 1] before quantisation.

CT: a window of width W and level L keeps HU in [L - W/2, L + W/2]:  v = clip((HU - (L - W/2)) / W, 0, 1).
MRI: the 0.5th and 99.5th percentiles (config) of the volume's voxels are the bounds:
v = clip((x - p_lo) / (p_hi - p_lo), 0, 1). Percentiles are taken over the native voxels as decoded
(before any filtering or interpolation, so fill values outside the field of view never count), over every
voxel up to
``MAX_PERCENTILE_SAMPLES`` voxels and over a regular stride of the flattened volume beyond that
(deterministic; the bounds then move by far less than one 8-bit level).
"""

from __future__ import annotations

import numpy as np


def ct_window(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    lo = level - width / 2.0
    out = (hu.astype(np.float32, copy=False) - np.float32(lo)) / np.float32(width)
    return np.clip(out, 0.0, 1.0, out=out)


MAX_PERCENTILE_SAMPLES = 1 << 18


def percentile_bounds(values: np.ndarray, percentiles) -> tuple[float, float]:
    flat = values.reshape(-1)
    stride = max(1, flat.size // MAX_PERCENTILE_SAMPLES)
    lo, hi = np.percentile(flat[::stride], [float(percentiles[0]), float(percentiles[1])])
    return float(lo), float(hi)


def scale_to_unit(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if not hi > lo:
        raise ValueError(f"empty intensity range [{lo}, {hi}]")
    out = (x.astype(np.float32, copy=False) - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)
