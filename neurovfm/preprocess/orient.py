"""Canonical orientation and the output grid of one series, from its voxel -> LPS affine alone.

Conventions
-----------
Input: ``affine`` (4 x 4) maps voxel (i = column, j = row, k = slice in sorted order) to LPS mm, as in
``series.csv``; the array is indexed ``[k, j, i]``. The k column may be sheared (gantry-tilted CT).

Output grid: an orthonormal frame ``direction`` whose columns are the LPS directions of the output array
axes (0 = slice, 1 = row, 2 = col), with spacing ``spacing_mm`` along them.

* Slice axis = the normal of the acquisition plane (cross product of the in-plane directions), so the
  coarse 4 mm spacing always lies along the native acquisition axis, also for sheared (tilted) stacks,
  whose slices stay parallel to the tilted plane.
* Canonical orientation: the frame is the acquisition frame with its axes permuted and flipped (never
  rotated, so oblique acquisitions are not re-sliced) so that every volume reads alike:
  the slice axis points to +L, +P or +S (whichever LPS axis it is closest to: sagittal, coronal,
  axial); in-plane, rows run towards posterior (axial) or inferior (coronal, sagittal), columns towards
  the patient's left (axial, coronal) or posterior (sagittal) -- the radiological display convention.
* Extent: the bounding box, in the output frame, of the input's voxel *edges*; the full size is
  ``floor(extent / spacing)`` per axis (as the authors' code), then fitted to whole patches by
  centre-cropping (``fit: crop``, the authors' choice) or centre-padding (``fit: pad``) symmetrically
  about the box centre, in physical space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# dominant LPS axis of the slice normal -> orientation, canonical (row, col) target directions (LPS)
_CANONICAL = {
    2: ("axial", (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)),
    1: ("coronal", (0.0, 0.0, -1.0), (1.0, 0.0, 0.0)),
    0: ("sagittal", (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
}
_EPS = 1e-6  # tolerance of floor() on extents that are whole multiples of the spacing up to rounding


class GeometryError(ValueError):
    """The affine cannot describe a volume (singular, non-finite, zero-length axes)."""


@dataclass(frozen=True)
class Grid:
    shape: tuple[int, int, int]  # output (slice, row, col) after fitting to whole patches
    full_shape: tuple[int, int, int]  # floor(extent / spacing) before fitting
    spacing: tuple[float, float, float]
    direction: np.ndarray  # 3 x 3, columns = LPS direction of output axes (slice, row, col)
    origin: np.ndarray  # LPS mm of the centre of output voxel [0, 0, 0]
    in_axes: tuple[int, int, int]  # input array axis (0 = k, 1 = j, 2 = i) behind each output axis
    orientation: str  # axial | coronal | sagittal (nearest)
    obliquity_deg: float  # angle between the slice normal and that LPS axis
    extent_mm: tuple[float, float, float]  # edge-to-edge bounding box of the input in the output frame
    fit: str

    @property
    def margin(self) -> tuple[int, int, int]:
        """Voxels removed (positive, crop) or added (negative, pad) per axis, in total."""
        return tuple(int(f - s) for f, s in zip(self.full_shape, self.shape))

    def voxel_to_lps(self) -> np.ndarray:
        """4 x 4 affine of the output array: index (slice, row, col) -> LPS mm."""
        out = np.eye(4)
        out[:3, :3] = self.direction * np.asarray(self.spacing)[None, :]
        out[:3, 3] = self.origin
        return out


def as_affine(value) -> np.ndarray:
    a = np.asarray(value, dtype=float).reshape(4, 4)
    if not np.isfinite(a).all():
        raise GeometryError("affine has non-finite entries")
    m = a[:3, :3]
    if np.any(np.linalg.norm(m, axis=0) <= 0) or abs(np.linalg.det(m)) < 1e-9:
        raise GeometryError("affine is singular")
    return a


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _sign(x: float) -> float:
    return -1.0 if x < 0 else 1.0


def native_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """(slice, row, col) voxel size in mm; the slice value is the perpendicular distance between slices."""
    m = affine[:3, :3]
    ci, cj, ck = m[:, 0], m[:, 1], m[:, 2]
    n = _unit(np.cross(ci, cj))
    return abs(float(ck @ n)), float(np.linalg.norm(cj)), float(np.linalg.norm(ci))


def canonical_frame(affine: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int], str, float]:
    """Return (direction, in_axes, orientation, obliquity_deg) as described in the module docstring."""
    m = affine[:3, :3]
    ci, cj, ck = m[:, 0], m[:, 1], m[:, 2]
    u = _unit(ci)
    v = _unit(cj - (cj @ u) * u)
    n = _unit(np.cross(u, v))
    if n @ ck < 0:
        n = -n
    dominant = int(np.argmax(np.abs(n)))
    orientation, row_t, col_t = _CANONICAL[dominant]
    row_t, col_t = np.asarray(row_t), np.asarray(col_t)
    n = n * _sign(n[dominant])
    obliquity = float(np.degrees(np.arccos(min(1.0, abs(n[dominant])))))
    # input axes: 2 = i (column direction u), 1 = j (row direction v)
    if abs(u @ row_t) + abs(v @ col_t) > abs(v @ row_t) + abs(u @ col_t):
        row, col, in_axes = u, v, (0, 2, 1)
    else:
        row, col, in_axes = v, u, (0, 1, 2)
    row = row * _sign(row @ row_t)
    col = col * _sign(col @ col_t)
    return np.column_stack([n, row, col]), in_axes, orientation, obliquity


def plan_grid(affine, shape: tuple[int, int, int], spacing, patch, fit: str = "crop") -> Grid:
    """Output grid of a volume of array ``shape`` (n_slices, rows, cols) with voxel->LPS ``affine``."""
    if fit not in ("crop", "pad"):
        raise ValueError(f"fit must be 'crop' or 'pad', not {fit!r}")
    a = as_affine(affine)
    direction, in_axes, orientation, obliquity = canonical_frame(a)
    n_k, n_j, n_i = shape
    corners = np.array([[i, j, k] for i in (-0.5, n_i - 0.5) for j in (-0.5, n_j - 0.5) for k in (-0.5, n_k - 0.5)])
    world = corners @ a[:3, :3].T + a[:3, 3]
    coords = world @ direction  # coordinates along the output axes
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    extent = hi - lo
    spacing = np.asarray(spacing, dtype=float)
    patch = np.asarray(patch, dtype=int)
    full = np.floor(extent / spacing + _EPS).astype(int)
    if fit == "crop":
        size = (full // patch) * patch
    else:
        size = -(-full // patch) * patch
    centre = (lo + hi) / 2.0
    first = centre - (size - 1) / 2.0 * spacing
    return Grid(
        shape=tuple(int(s) for s in size),
        full_shape=tuple(int(f) for f in full),
        spacing=tuple(float(s) for s in spacing),
        direction=direction,
        origin=direction @ first,
        in_axes=in_axes,
        orientation=orientation,
        obliquity_deg=obliquity,
        extent_mm=tuple(float(e) for e in extent),
        fit=fit,
    )


def index_map(grid: Grid, affine) -> tuple[np.ndarray, np.ndarray]:
    """(matrix, offset) with input index [k, j, i] = matrix @ [s, r, c] + offset, for
    ``scipy.ndimage.affine_transform``; the full (possibly sheared) affine is inverted exactly."""
    a = as_affine(affine)
    m_inv = np.linalg.inv(a[:3, :3])
    to_kji = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=float)  # (i, j, k) -> (k, j, i)
    step = grid.direction * np.asarray(grid.spacing)[None, :]
    matrix = to_kji @ m_inv @ step
    offset = to_kji @ m_inv @ (grid.origin - a[:3, 3])
    return matrix, offset
