"""Trilinear sampling of the synthetic export, compiled: the numbers of ``torch.nn.functional.grid_sample``.

The export samples volumes in two places: each warp of a patient's tissue maps (``lesions.Canvas.warp``: the
person's own anatomy, mass effect, atrophy; up to a million moving voxels of six channels) and every rendered
series (``phantom.render``: slices x rows x columns x samples through the slice). ``grid_sample`` needs the
sampling points as a materialised float32 grid and, for the warp, index arrays of the moving voxels and masked
write-backs; these kernels compute the points on the fly and write the results in place.

The arithmetic is torch's CPU kernel for 5-D bilinear sampling with ``align_corners=True`` step for step in
float32 (normalised coordinates as the former array code formed them, un-normalisation, clipping for border
padding, the eight corner weights, the corners added in torch's order), so the values are equal bit for bit:
``tests/test_synth_resample.py`` compares them with ``grid_sample``, and ``benchmarks/synth_resample.py`` checks
that the export's files do not change. No fast-math: reassociating or fusing float32 operations would move last
bits, and with them every downstream number.
"""

from __future__ import annotations

import numba
import numpy as np

_ONE = np.float32(1.0)
_TWO = np.float32(2.0)


@numba.njit(cache=True, inline="always")
def _source_index(g, size, border):
    """torch's ``grid_sampler_compute_source_index`` for align_corners=True (border: clipped to the volume)."""
    x = ((g + _ONE) / _TWO) * np.float32(size - 1)
    if border:
        x = min(np.float32(size - 1), max(x, np.float32(0.0)))
    return x


@numba.njit(cache=True, inline="always")
def _corners(ix, iy, iz):
    """Lower corner and the eight weights in torch's order (tnw, tne, tsw, tse, bnw, bne, bsw, bse)."""
    x0, y0, z0 = np.int64(np.floor(ix)), np.int64(np.floor(iy)), np.int64(np.floor(iz))
    x1, y1, z1 = np.float32(x0 + 1), np.float32(y0 + 1), np.float32(z0 + 1)
    fx0, fy0, fz0 = np.float32(x0), np.float32(y0), np.float32(z0)
    w = (
        (x1 - ix) * (y1 - iy) * (z1 - iz),
        (ix - fx0) * (y1 - iy) * (z1 - iz),
        (x1 - ix) * (iy - fy0) * (z1 - iz),
        (ix - fx0) * (iy - fy0) * (z1 - iz),
        (x1 - ix) * (y1 - iy) * (iz - fz0),
        (ix - fx0) * (y1 - iy) * (iz - fz0),
        (x1 - ix) * (iy - fy0) * (iz - fz0),
        (ix - fx0) * (iy - fy0) * (iz - fz0),
    )
    return x0, y0, z0, w


@numba.njit(cache=True, inline="always")
def _interp(vol, x0, y0, z0, w):
    """The weighted sum of the eight corners of one channel ``vol`` [D, H, W] in torch's order (corners outside
    count as zero)."""
    d, h, wd = vol.shape
    acc = np.float32(0.0)
    n = 0
    for dz in range(2):
        z = z0 + dz
        for dy in range(2):
            y = y0 + dy
            for dx in range(2):
                x = x0 + dx
                if 0 <= z < d and 0 <= y < h and 0 <= x < wd:
                    acc += np.float32(vol[z, y, x]) * w[n]
                n += 1
    return acc


@numba.njit(cache=True)
def render_grid(vol, coef, n_slices, rows, cols, out):
    """Mean over samples s of ``vol`` sampled (zeros outside) at the normalised points
    ``coef[s, r, 0] * i + coef[s, r, 1] * j + coef[s, r, 2] * k + coef[s, r, 3]`` (r = x, y, z; i column, j row,
    k slice; float32 in this order, as the array expression of ``phantom.render`` evaluates it), written to
    ``out`` [n_slices, rows, cols]. The mean is numpy's over the first axis of a float32 array: sequential float32
    sums, divided in float64."""
    d, h, wd = vol.shape
    n_sub = coef.shape[0]
    for k in range(n_slices):
        fk = np.float32(k)
        for j in range(rows):
            fj = np.float32(j)
            for i in range(cols):
                fi = np.float32(i)
                acc = np.float32(0.0)
                for s in range(n_sub):
                    gx = coef[s, 0, 0] * fi + coef[s, 0, 1] * fj + coef[s, 0, 2] * fk + coef[s, 0, 3]
                    gy = coef[s, 1, 0] * fi + coef[s, 1, 1] * fj + coef[s, 1, 2] * fk + coef[s, 1, 3]
                    gz = coef[s, 2, 0] * fi + coef[s, 2, 1] * fj + coef[s, 2, 2] * fk + coef[s, 2, 3]
                    ix = _source_index(gx, wd, False)
                    iy = _source_index(gy, h, False)
                    iz = _source_index(gz, d, False)
                    x0, y0, z0, w = _corners(ix, iy, iz)
                    v = _interp(vol, x0, y0, z0, w)
                    acc = v if s == 0 else acc + v
                out[k, j, i] = np.float32(np.float64(acc) / n_sub)


@numba.njit(cache=True, inline="always")
def _source_point(ux, uy, uz, a, b, c, start, tol):
    """Whether box voxel (a, b, c) moves by more than ``tol`` (|ux| + |uy| + |uz|, float32), and the index (z, y, x)
    it is sampled from: p - u, with the native axes running (-x, -y, +z) along the index axes."""
    mx, my, mz = ux[a, b, c], uy[a, b, c], uz[a, b, c]
    kz = np.float32(a) + np.float32(start[0])
    ky = np.float32(b) + np.float32(start[1])
    kx = np.float32(c) + np.float32(start[2])
    return (abs(mx) + abs(my)) + abs(mz) > tol, kz - mz, ky + my, kx + mx


@numba.njit(cache=True)
def moving_bounds(ux, uy, uz, start, tol):
    """Voxels of a box (first index ``start``, shape of ``ux``) that a displacement (ux, uy, uz) in mm moves by more
    than ``tol``, and the extent of the points they are sampled from (:func:`_source_point`): returns
    (count, lo, hi) with lo / hi the float32 minimum / maximum of the source index (z, y, x)."""
    lo = np.full(3, np.inf, np.float32)
    hi = np.full(3, -np.inf, np.float32)
    count = 0
    nz, ny, nx = ux.shape
    for a in range(nz):
        for b in range(ny):
            for c in range(nx):
                moving, sz, sy, sx = _source_point(ux, uy, uz, a, b, c, start, tol)
                if moving:
                    count += 1
                    s = (sz, sy, sx)
                    for r in range(3):
                        lo[r] = min(lo[r], s[r])
                        hi[r] = max(hi[r], s[r])
    return count, lo, hi


@numba.njit(cache=True)
def warp_moving(ux, uy, uz, start, tol, lo, src, frac, chans, vent, dist, with_vent, carry):
    """Resample the moving voxels of a box in place: each takes ``src`` (a float32 copy of the channels, then the
    ventricle mask and the sulcal distances when ``with_vent`` / ``carry``, over the region starting at index
    ``lo``) at its source point, with grid_sample's border padding. Channels go back to the uint8 maps
    ``frac[chans]`` rounded half to even and clipped, the mask as value > 0.5, the distances as they are: the
    numbers of the array code this replaces, written without its index arrays."""
    n_c = chans.shape[0]
    d, h, wd = src.shape[1], src.shape[2], src.shape[3]
    den = (np.float32(max(wd - 1, 1)), np.float32(max(h - 1, 1)), np.float32(max(d - 1, 1)))
    flo = (np.float32(lo[2]), np.float32(lo[1]), np.float32(lo[0]))
    nz, ny, nx = ux.shape
    for a in range(nz):
        for b in range(ny):
            for c in range(nx):
                moving, sz, sy, sx = _source_point(ux, uy, uz, a, b, c, start, tol)
                if not moving:
                    continue
                gx = _TWO * (sx - flo[0]) / den[0] - _ONE
                gy = _TWO * (sy - flo[1]) / den[1] - _ONE
                gz = _TWO * (sz - flo[2]) / den[2] - _ONE
                x0, y0, z0, w = _corners(
                    _source_index(gx, wd, True), _source_index(gy, h, True), _source_index(gz, d, True)
                )
                z, y, x = a + start[0], b + start[1], c + start[2]
                for n in range(n_c):
                    v = np.rint(_interp(src[n], x0, y0, z0, w))
                    frac[chans[n], z, y, x] = np.uint8(min(max(v, np.float32(0.0)), np.float32(255.0)))
                if with_vent:
                    vent[z, y, x] = _interp(src[n_c], x0, y0, z0, w) > np.float32(0.5)
                if carry:
                    dist[z, y, x] = _interp(src[src.shape[0] - 1], x0, y0, z0, w)


def compile_kernels() -> None:
    """Compile (or load from numba's cache) the one signature of each kernel that the export calls, on tiny
    arrays of the same types: called in the export's parent process before it forks its workers, so that they
    inherit the machine code instead of each compiling it (seconds per process on a fresh checkout)."""
    field = np.zeros((2, 2, 2), np.float32)
    field.flags.writeable = False  # Canvas.warp hands the kernels read-only displacement fields
    start = np.zeros(3, np.int64)
    tol = np.float32(0.05)
    moving_bounds(field, field, field, start, tol)
    warp_moving(
        field, field, field, start, tol, start, np.zeros((2, 2, 2, 2), np.float32), np.zeros((1, 2, 2, 2), np.uint8),
        np.zeros(1, np.int64), np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2), np.float32), True, True,
    )  # fmt: skip
    render_grid(
        np.zeros((2, 2, 2), np.float32), np.zeros((1, 3, 4), np.float32), 1, 1, 1, np.empty((1, 1, 1), np.float32)
    )
