"""The array code that ``neurovfm.synth.resample``'s kernels replaced: float32 grids and
``torch.nn.functional.grid_sample``. Kept as the oracle of ``tests/test_synth_resample.py`` and the baseline of
``benchmarks/synth_resample.py``; the export does not use it. ``grid_dtype=np.float64`` forms the sampling points in
float64 instead (the positive control of both: it moves last bits).
"""

from __future__ import annotations

import numpy as np
import torch


def render_grid_torch(vol, coef, n_slices, rows, cols, out=None, grid_dtype=np.float32):
    """``resample.render_grid`` as ``phantom.render`` computed it before: the grid as an array expression,
    grid_sample (zeros padding), the mean over the samples. Returns the image (also written to ``out`` if given)."""
    n_sub = coef.shape[0]
    i = np.arange(cols, dtype=grid_dtype)[None, None, :]
    j = np.arange(rows, dtype=grid_dtype)[None, :, None]
    k = np.arange(n_slices, dtype=grid_dtype)[:, None, None]
    grid = np.empty((n_sub, n_slices, rows, cols, 3), np.float32)
    for s in range(n_sub):
        for r in range(3):
            c = coef[s, r].astype(grid_dtype)
            grid[s, ..., r] = c[0] * i + c[1] * j + c[2] * k + c[3]
    res = torch.nn.functional.grid_sample(
        torch.from_numpy(vol)[None, None],
        torch.from_numpy(grid.reshape(1, n_sub * n_slices, rows, cols, 3)),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )
    img = res[0, 0].numpy().reshape(n_sub, n_slices, rows, cols).mean(0)
    if out is not None:
        out[...] = img
    return img


def warp_torch(cv, box, u, channels, with_vent=True, tol_mm=0.05, grid_dtype=np.float32):
    """``lesions.Canvas.warp`` as it was before: index arrays of the moving voxels, a float32 grid, grid_sample
    (border padding) and masked write-backs into the canvas ``cv``."""
    shape_box = tuple(s.stop - s.start for s in box)
    ux, uy, uz = (np.broadcast_to(np.asarray(c, np.float32), shape_box) for c in u)
    moving = (np.abs(ux) + np.abs(uy) + np.abs(uz)) > tol_mm
    if not moving.any():
        return
    nz = np.nonzero(moving)
    kz, ky, kx = (nz[n].astype(np.float32) + box[n].start for n in range(3))
    sx, sy, sz = kx + ux[moving], ky + uy[moving], kz - uz[moving]
    lo = [int(max(0, np.floor(v.min()) - 1)) for v in (sz, sy, sx)]
    hi = [int(min(n, np.ceil(v.max()) + 2)) for v, n in zip((sz, sy, sx), cv.anat.shape)]
    big = tuple(slice(a, b) for a, b in zip(lo, hi))
    chans, dims = list(channels), [b - a for a, b in zip(lo, hi)]
    carry = cv.csf_dist is not None
    src = np.empty((len(chans) + int(with_vent) + int(carry), *dims), np.float32)
    src[: len(chans)] = cv.frac[(slice(None),) + big][chans]
    if with_vent:
        src[len(chans)] = cv.vent[big]
    if carry:
        src[-1] = cv.csf_dist[big]
    g = [
        (2 * (v.astype(grid_dtype) - a) / max(n - 1, 1) - 1).astype(np.float32)
        for v, a, n in zip((sx, sy, sz), lo[::-1], dims[::-1])
    ]
    out = torch.nn.functional.grid_sample(
        torch.from_numpy(src)[None],
        torch.from_numpy(np.stack(g, -1))[None, None, None],
        mode="bilinear",
        padding_mode="border",
        align_corners=True,
    )[0, :, 0, 0].numpy()
    for n, c in enumerate(chans):
        cv.frac[c][box][moving] = np.clip(np.round(out[n]), 0, 255).astype(np.uint8)
    if with_vent:
        cv.vent[box][moving] = out[len(chans)] > 0.5
    if carry:
        cv.csf_dist[box][moving] = out[-1]
