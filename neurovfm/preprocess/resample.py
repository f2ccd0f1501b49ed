"""Resample one volume onto its output grid (see :mod:`neurovfm.preprocess.orient`).

Anti-aliasing: where the output voxel is coarser than the input along an input axis (thin CT slices
going to 4 mm, 0.5 mm pixels going to 1 mm), the input is first averaged with a centred box of an odd
number of input voxels, the odd integer nearest the ratio output/input spacing (ties up), so a 4 mm
output slice is close to a 4 mm slab average, as a thick-slab reconstruction would give. An odd box
keeps the filter centred: no sub-voxel shift, and linear intensity ramps pass unchanged.
Interpolation: linear through the exact inverse of the full affine (shear included), ``grid-constant``
boundary (a fill value beyond the scanned field of view, blended over the last half voxel).

Two paths give the same numbers (to float32 rounding): because the output frame keeps the acquisition's
in-plane axes (see :mod:`neurovfm.preprocess.orient`), the input slice index depends on the output slice
only, and each in-plane input index on one output in-plane axis plus, for a sheared (tilted) stack, the
output slice. The fast path applies box filter + linear interpolation as one sparse matrix per axis
(slices first, then per-slice in-plane matrices when sheared), costing a few passes over the input; the
general path (``scipy.ndimage.affine_transform`` after an in-place box filter) serves other orders and
affines whose in-plane axes are not orthogonal. Real headers are separable only up to the rounding of their
direction cosines (decimal strings), so the fast path takes a map whose cross terms move no sample by more
than ``MAX_SHIFT_VOXELS`` and leaves them out; on the demo export that is every series instead of a quarter.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse

from neurovfm.preprocess.orient import Grid, index_map, native_spacing


def box_widths(affine: np.ndarray, grid: Grid) -> tuple[int, int, int]:
    """Odd box width (input voxels) per input array axis (k, j, i); 1 = no filtering."""
    native = native_spacing(affine)  # (slice, row, col) = input axes (k, j, i)
    widths = [1, 1, 1]
    for out_axis, in_axis in enumerate(grid.in_axes):
        ratio = grid.spacing[out_axis] / native[in_axis]
        widths[in_axis] = max(1, 2 * int(np.floor((ratio - 1.0) / 2.0 + 0.5)) + 1)
    return tuple(widths)


def antialias(array: np.ndarray, widths) -> np.ndarray:
    """Box-average ``array`` in place along each axis whose width is above 1; returns ``array``."""
    for axis, width in enumerate(widths):
        if width > 1 and array.shape[axis] > 1:
            ndimage.uniform_filter1d(array, size=int(width), axis=axis, output=array, mode="nearest")
    return array


def _axis_matrix(pos: np.ndarray, n: int, width: int) -> tuple[sparse.csr_matrix, np.ndarray]:
    """(W, c): box(width, edge-replicated) then linear interpolation at input positions ``pos`` of an axis
    of length ``n`` as ``W @ x + c * cval`` (grid-constant: neighbours outside [0, n-1] are the fill)."""
    h = width // 2
    f = np.floor(pos)
    t = pos - f
    x0 = f.astype(np.int64)
    rows, cols, vals = [], [], []
    const = np.zeros(len(pos))
    for nb, wgt in ((x0, 1.0 - t), (x0 + 1, t)):
        inside = (nb >= 0) & (nb <= n - 1)
        const += np.where(inside, 0.0, wgt)
        for d in range(-h, h + 1):
            rows.append(np.nonzero(inside)[0])
            cols.append(np.clip(nb[inside] + d, 0, n - 1))
            vals.append(wgt[inside] / width)
    w = sparse.csr_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))), shape=(len(pos), n)
    )
    w.sum_duplicates()
    return w, const.astype(np.float32)


# The largest sampling-position error (input voxels, anywhere in the output) that the fast path may make by
# dropping the cross terms of a nearly separable map. DICOM stores direction cosines as decimal strings of at most
# 16 characters, so an acquisition's own axes come back orthogonal only to about 1e-7..1e-6; over a 256-voxel
# output that moves a sample by at most a few 1e-4 voxels, far below what linear interpolation resolves.
MAX_SHIFT_VOXELS = 1e-3


def separable_plan(matrix: np.ndarray, shape, max_shift: float = MAX_SHIFT_VOXELS):
    """For each output in-plane axis, the input axis it reads, or None if the map is not separable.

    A map is separable when the input slice depends on the output slice only and each in-plane input axis on one
    output in-plane axis (plus the output slice, for a sheared stack). Cross terms are dropped where, summed over
    the output's extent ``shape`` (s, r, c), they move no sample by more than ``max_shift`` input voxels."""
    span = np.maximum(np.asarray(shape, dtype=float) - 1.0, 0.0)  # output index range per axis
    a = np.abs(np.asarray(matrix, dtype=float))
    if a[0, 1] * span[1] + a[0, 2] * span[2] > max_shift:
        return None
    src = [1 + int(np.argmax(a[1:, o])) for o in (1, 2)]  # output axis o reads input axis src[o - 1]
    if sorted(src) != [1, 2]:
        return None
    for in_axis in (1, 2):
        dropped = sum(a[in_axis, o] * span[o] for o in (1, 2) if src[o - 1] != in_axis)
        if dropped > max_shift:
            return None
    return src


def _separable(
    array: np.ndarray, matrix: np.ndarray, offset: np.ndarray, shape, widths, cval: float, src
) -> np.ndarray:
    S, R, C = shape
    K, J, I = array.shape
    s_idx = np.arange(S, dtype=float)
    w0, c0 = _axis_matrix(matrix[0, 0] * s_idx + offset[0], K, widths[0])
    tmp = (w0 @ array.reshape(K, J * I)).reshape(S, J, I)
    if cval:
        tmp += (c0 * np.float32(cval))[:, None, None]
    out_len = {1: R, 2: C}
    sheared = [abs(matrix[a, 0]) > 1e-9 for a in (1, 2)]
    out = np.empty((S, R, C), dtype=np.float32)
    cache = {}
    for s in range(S):
        plane = tmp[s]
        mats = []
        for a in (1, 2):  # input axis a, read by output axis o
            o = 1 + src.index(a)
            key = (a, s if sheared[a - 1] else -1)
            if key not in cache:
                pos = matrix[a, o] * np.arange(out_len[o], dtype=float) + offset[a] + matrix[a, 0] * s
                cache[key] = _axis_matrix(pos, plane.shape[a - 1], widths[a])
            mats.append(cache[key])
        (wj, cj), (wi, ci) = mats
        res = wj @ plane  # (len_j_out, I)
        if cval:
            res += (cj * np.float32(cval))[:, None]
        res = (wi @ res.T).T  # (len_j_out, len_i_out)
        if cval:
            res += (ci * np.float32(cval))[None, :]
        out[s] = res if src == [1, 2] else res.T
    return out


def resample(
    array: np.ndarray, affine: np.ndarray, grid: Grid, order: int = 1, cval: float = 0.0, smooth: bool = True
) -> np.ndarray:
    """float32 array of ``grid.shape`` sampled from ``array`` (indexed [k, j, i]).

    ``array`` must be float32; it is modified in place when ``smooth`` is set (the caller owns it)."""
    if array.dtype != np.float32:
        raise TypeError(f"resample expects float32 input, got {array.dtype}")
    widths = box_widths(affine, grid) if smooth else (1, 1, 1)
    matrix, offset = index_map(grid, affine)
    src = separable_plan(matrix, grid.shape) if order == 1 else None
    if src is not None:
        return _separable(array, matrix, offset, grid.shape, widths, cval, src)
    antialias(array, widths)
    return ndimage.affine_transform(
        array,
        matrix,
        offset=offset,
        output_shape=grid.shape,
        output=np.float32,
        order=order,
        mode="grid-constant",
        cval=float(cval),
        prefilter=order > 1,
    )
