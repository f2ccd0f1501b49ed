"""Slice-stack geometry in DICOM patient coordinates (LPS, mm): sorting, spacing checks, tilt, affine.

Voxel convention (shared with preprocessing): index (i, j, k) = (column, row, slice in sorted order).
IOP's first cosine triplet is the direction of increasing column index i, the second of increasing
row index j; PixelSpacing is (row spacing, column spacing).
"""

from __future__ import annotations

import numpy as np


def cosines(iop) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row cosine, column cosine (both normalised) and the slice normal (row x column)."""
    v = np.asarray(iop, dtype=float)
    if v.shape != (6,):
        raise ValueError(f"ImageOrientationPatient needs 6 values, got {v.size}")
    r, c = v[:3], v[3:]
    nr, nc = np.linalg.norm(r), np.linalg.norm(c)
    if nr < 1e-6 or nc < 1e-6:
        raise ValueError("ImageOrientationPatient has a zero-length direction")
    r, c = r / nr, c / nc
    n = np.cross(r, c)
    nn = np.linalg.norm(n)
    if nn < 1e-6:
        raise ValueError("ImageOrientationPatient row and column cosines are parallel")
    return r, c, n / nn


def orientations_agree(iops, tolerance: float) -> bool:
    """True when every orientation's cosines differ from the first's by at most ``tolerance``."""
    a = np.asarray(iops, dtype=float)
    return bool(np.max(np.abs(a - a[0])) <= tolerance) if len(a) else True


def project(ipps, normal: np.ndarray) -> np.ndarray:
    """Position of each slice origin along the slice normal (mm)."""
    return np.asarray(ipps, dtype=float) @ normal


def cluster_positions(proj: np.ndarray, tolerance_mm: float) -> np.ndarray:
    """Label per slice: slices whose positions along the normal lie within ``tolerance_mm`` of the
    previous one (in sorted order) share a label."""
    order = np.argsort(proj, kind="stable")
    labels = np.empty(len(proj), dtype=int)
    current = 0
    for rank, idx in enumerate(order):
        if rank and proj[idx] - proj[order[rank - 1]] > tolerance_mm:
            current += 1
        labels[idx] = current
    return labels


def gap_problem(sorted_proj: np.ndarray, spacing_tolerance: float) -> tuple[str | None, str, float]:
    """Check the gaps between consecutive sorted slices.

    Returns (reason, detail, median gap). A gap close to an integer multiple (>= 2) of the median
    gap means slices are missing; any other gap deviating from the median by more than
    ``spacing_tolerance`` (relative) is irregular spacing.
    """
    gaps = np.diff(sorted_proj)
    if gaps.size == 0:
        return None, "", 0.0
    median = float(np.median(gaps))
    if median <= 0:
        return "duplicate_positions", "slices share a position", median
    ratio = gaps / median
    nearest = np.rint(ratio)
    missing = (nearest >= 2) & (np.abs(ratio - nearest) <= spacing_tolerance)
    if missing.any():
        n_missing = int(np.sum(nearest[missing] - 1))
        return (
            "missing_slices",
            f"{n_missing} slice(s) missing (gaps of {ratio[missing].round(2).tolist()} x the median {median:.3g} mm)",
            median,
        )
    off = np.abs(ratio - 1) > spacing_tolerance
    if off.any():
        return (
            "irregular_spacing",
            f"{int(off.sum())} gap(s) deviate from the median {median:.3g} mm by more than "
            f"{100 * spacing_tolerance:.0f}% (range {gaps.min():.3g}-{gaps.max():.3g} mm)",
            median,
        )
    return None, "", median


def tilt_deg(sorted_ipps, normal: np.ndarray) -> float:
    """Angle between the stacking direction (first to last slice origin) and the slice normal."""
    p = np.asarray(sorted_ipps, dtype=float)
    d = p[-1] - p[0]
    nd = np.linalg.norm(d)
    if nd < 1e-9:
        return 0.0
    cos = abs(float(np.dot(d / nd, normal)))
    return float(np.degrees(np.arccos(min(1.0, cos))))


def affine_lps(iop, pixel_spacing, sorted_ipps) -> np.ndarray:
    """4x4 voxel (i, j, k) -> LPS mm. Third column = mean step between sorted slice origins, so a
    gantry tilt appears as shear rather than being hidden in a rotated direction."""
    r, c, n = cosines(iop)
    row_sp, col_sp = (float(v) for v in pixel_spacing)
    p = np.asarray(sorted_ipps, dtype=float)
    a = np.eye(4)
    a[:3, 0] = r * col_sp
    a[:3, 1] = c * row_sp
    a[:3, 2] = (p[-1] - p[0]) / (len(p) - 1) if len(p) > 1 else n
    a[:3, 3] = p[0]
    return a


def orientation_label(normal: np.ndarray, oblique_deg: float) -> str:
    """axial / coronal / sagittal by the normal's dominant LPS axis (x: sagittal, y: coronal, z: axial);
    oblique when the normal is more than ``oblique_deg`` away from that axis."""
    a = np.abs(np.asarray(normal, dtype=float))
    axis = int(np.argmax(a))
    if a[axis] < np.cos(np.radians(oblique_deg)):
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]
