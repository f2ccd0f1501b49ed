"""Acquisition geometry of one synthetic series, in DICOM patient coordinates (LPS, mm).

The renderer samples anatomy on exactly the grid this object describes and the DICOM writer
copies the same numbers into ImageOrientationPatient / ImagePositionPatient / PixelSpacing,
so image content and header geometry cannot drift apart.

Voxel index convention: (k, j, i) = (slice, row, column). DICOM's row direction cosine
(first triplet of IOP) is the direction of increasing column index i; the column direction
cosine (second triplet) is the direction of increasing row index j.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Unit vectors of the LPS patient frame: x to the patient's Left, y Posterior, z Superior.
_PLANES = {
    # plane: (row cosine = direction of +column, column cosine = direction of +row)
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),  # normal +z (towards head)
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),  # normal +y (posterior)
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),  # normal -x (right)
}


def _rotation(angles_deg: tuple[float, float, float]) -> np.ndarray:
    """Rotation matrix for small obliquity angles about x, y, z (degrees), applied x then y then z."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Acquisition:
    """A stack of parallel 2D slices.

    ``center_lps`` is the physical centre of the stack. ``gantry_tilt_deg`` shears the stack
    (CT only): slices stay parallel to the tilted plane but successive slice origins move along
    the table axis (+z), as on a tilted CT gantry, so the stacking direction is not the normal.
    """

    plane: str  # axial | coronal | sagittal
    rows: int
    cols: int
    n_slices: int
    pixel_spacing: tuple[float, float]  # (row spacing = between rows, column spacing) mm
    slice_thickness: float
    spacing_between_slices: float
    center_lps: tuple[float, float, float] = (0.0, 0.0, 0.0)
    oblique_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    gantry_tilt_deg: float = 0.0
    reverse_order: bool = False  # instance 1 at the far end of the stack
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.plane not in _PLANES:
            raise ValueError(f"unknown plane {self.plane!r}; expected one of {sorted(_PLANES)}")
        if self.rows < 1 or self.cols < 1 or self.n_slices < 1:
            raise ValueError("rows, cols and n_slices must be positive")

    @property
    def direction_cosines(self) -> tuple[np.ndarray, np.ndarray]:
        r, c = (np.asarray(v, dtype=float) for v in _PLANES[self.plane])
        rot = _rotation(self.oblique_deg)
        if self.gantry_tilt_deg:
            rot = _rotation((self.gantry_tilt_deg, 0.0, 0.0)) @ rot
        return rot @ r, rot @ c

    @property
    def slice_normal(self) -> np.ndarray:
        r, c = self.direction_cosines
        return np.cross(r, c)

    @property
    def slice_step(self) -> np.ndarray:
        """Displacement between consecutive slice origins (mm, LPS)."""
        n = self.slice_normal
        if self.gantry_tilt_deg:
            # Table moves along z; keep the perpendicular distance between planes equal to the spacing.
            z = np.array([0.0, 0.0, 1.0]) * np.sign(n[2] if n[2] != 0 else 1.0)
            return z * self.spacing_between_slices / abs(float(np.dot(z, n)))
        return n * self.spacing_between_slices

    def iop(self) -> list[float]:
        r, c = self.direction_cosines
        return [float(v) for v in (*r, *c)]

    def voxel_to_lps(self) -> np.ndarray:
        """4x4 affine from (i=column, j=row, k=slice index in storage order) to LPS mm."""
        if "affine" in self._cache:
            return self._cache["affine"]
        r, c = self.direction_cosines
        step = self.slice_step
        dr, dc = self.pixel_spacing
        centre = np.asarray(self.center_lps, dtype=float)
        origin = centre - r * dc * (self.cols - 1) / 2 - c * dr * (self.rows - 1) / 2 - step * (self.n_slices - 1) / 2
        a = np.eye(4)
        a[:3, 0] = r * dc
        a[:3, 1] = c * dr
        a[:3, 2] = step
        a[:3, 3] = origin
        if self.reverse_order:
            a[:3, 3] = origin + step * (self.n_slices - 1)
            a[:3, 2] = -step
        self._cache["affine"] = a
        return a

    def slice_positions(self) -> np.ndarray:
        """ImagePositionPatient (centre of the first transmitted pixel) of every slice, shape (n, 3)."""
        a = self.voxel_to_lps()
        k = np.arange(self.n_slices, dtype=float)
        return a[:3, 3][None, :] + k[:, None] * a[:3, 2][None, :]

    def voxel_centres_lps(self) -> np.ndarray:
        """LPS coordinates of every voxel centre, shape (n_slices, rows, cols, 3)."""
        a = self.voxel_to_lps()
        k, j, i = np.meshgrid(np.arange(self.n_slices), np.arange(self.rows), np.arange(self.cols), indexing="ij")
        idx = np.stack([i, j, k, np.ones_like(i)], axis=-1).astype(np.float32)
        return (idx @ a.T.astype(np.float32))[..., :3]
