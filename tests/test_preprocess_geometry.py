"""Output grid and resampling vs SimpleITK, for every orientation, obliquity and a sheared (tilted) CT."""

import numpy as np
import pytest
import SimpleITK as sitk

from neurovfm.preprocess.orient import index_map, plan_grid
from volume_factory import Acquisition, lps_grid, ramp, volume
from neurovfm.preprocess import resample as rs
from neurovfm.preprocess.resample import resample

SPACING, PATCH = (4.0, 1.0, 1.0), (4, 16, 16)

CASES = {
    "axial": Acquisition("axial", (24, 90, 80), (1.3, 1.1), 5.0),
    "axial_flipped": Acquisition(
        "axial", (24, 90, 80), (1.3, 1.1), 5.0, flip_cols=True, flip_rows=True, reverse_slices=True
    ),
    "coronal": Acquisition("coronal", (30, 70, 96), (1.2, 0.9), 4.5),
    "sagittal": Acquisition("sagittal", (28, 100, 90), (1.0, 1.0), 3.3, flip_rows=True),
    "oblique": Acquisition("axial", (26, 96, 96), (0.9, 0.9), 4.0, oblique_deg=17.0),
    "oblique_sagittal": Acquisition("sagittal", (20, 80, 80), (1.1, 1.1), 5.0, oblique_deg=-25.0),
    "thin_ct": Acquisition("axial", (64, 128, 128), (0.6, 0.6), 0.8),
}


def sitk_image(array, affine):
    """The same volume as an ITK image (valid for unsheared affines)."""
    img = sitk.GetImageFromArray(array)
    m = affine[:3, :3]
    sp = np.linalg.norm(m, axis=0)
    img.SetSpacing(tuple(float(s) for s in sp))
    img.SetDirection(tuple(float(v) for v in (m / sp).ravel()))
    img.SetOrigin(tuple(float(v) for v in affine[:3, 3]))
    return img


def reference(grid):
    ref = sitk.Image([int(s) for s in grid.shape[::-1]], sitk.sitkFloat32)
    ref.SetSpacing(tuple(float(s) for s in grid.spacing[::-1]))
    ref.SetDirection(tuple(float(v) for v in grid.direction[:, ::-1].ravel()))
    ref.SetOrigin(tuple(float(v) for v in grid.origin))
    return ref


@pytest.mark.parametrize("name", sorted(CASES))
def test_grid_geometry_matches_sitk(name):
    acq = CASES[name]
    arr, aff = volume(acq, "CT")
    img = sitk_image(arr, aff)
    grid = plan_grid(aff, arr.shape, SPACING, PATCH)
    assert grid.spacing == SPACING
    assert np.allclose(grid.direction.T @ grid.direction, np.eye(3), atol=1e-9)
    d = np.asarray(img.GetDirection()).reshape(3, 3)
    normal = np.cross(d[:, 0], d[:, 1])
    assert abs(abs(grid.direction[:, 0] @ normal) - 1) < 1e-9  # 4 mm along the acquisition axis
    corners = np.array(
        [
            img.TransformContinuousIndexToPhysicalPoint((float(x), float(y), float(z)))
            for x in (-0.5, arr.shape[2] - 0.5)
            for y in (-0.5, arr.shape[1] - 0.5)
            for z in (-0.5, arr.shape[0] - 0.5)
        ]
    )
    proj = corners @ grid.direction
    extent = proj.max(0) - proj.min(0)
    assert np.allclose(extent, grid.extent_mm, atol=1e-6)
    full = np.asarray(grid.full_shape) * np.asarray(SPACING)
    assert np.all(full <= extent + 1e-6) and np.all(extent - full < np.asarray(SPACING))
    assert all(s % p == 0 and s > 0 for s, p in zip(grid.shape, PATCH))
    # the grid is centred on the input's box: its centre is the box centre within half a voxel
    centre = grid.origin + grid.direction @ ((np.asarray(grid.shape) - 1) / 2 * np.asarray(SPACING))
    assert np.allclose(centre @ grid.direction, (proj.max(0) + proj.min(0)) / 2, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_resampled_values_match_sitk(name):
    acq = CASES[name]
    aff = acq.affine()
    arr = ramp(lps_grid(aff, acq.shape)) + volume(acq, "CT")[0] * 0.01
    grid = plan_grid(aff, arr.shape, SPACING, PATCH)
    ours = resample(arr.copy(), aff, grid, order=1, cval=-1000.0, smooth=False)
    theirs = sitk.GetArrayFromImage(
        sitk.Resample(
            sitk_image(arr, aff), reference(grid), sitk.Transform(), sitk.sitkLinear, float("nan"), sitk.sitkFloat32
        )
    )
    matrix, offset = index_map(grid, aff)
    q = np.stack(np.meshgrid(*(np.arange(n) for n in grid.shape), indexing="ij")).reshape(3, -1)
    idx = (matrix @ q + offset[:, None]).T
    inside = np.all((idx >= 0) & (idx <= np.asarray(arr.shape) - 1), axis=1).reshape(grid.shape)
    assert inside.mean() > 0.3
    assert np.allclose(ours[inside], theirs[inside], atol=2e-2)


def test_fast_and_general_paths_agree_and_antialias_keeps_ramps():
    acq = Acquisition("axial", (60, 100, 100), (0.5, 0.5), 1.25, tilt_deg=22.0)
    aff = acq.affine()
    arr = ramp(lps_grid(aff, acq.shape))
    grid = plan_grid(aff, arr.shape, SPACING, PATCH)
    fast = resample(arr.copy(), aff, grid, order=1, cval=0.0)
    general = resample(arr.copy(), aff, grid, order=0, cval=0.0, smooth=False)  # nearest, general path
    out_lps = lps_grid(grid.voxel_to_lps()[:, [2, 1, 0, 3]], grid.shape)  # (s, r, c) as (k, j, i)
    truth = ramp(out_lps)
    matrix, offset = index_map(grid, aff)
    q = np.stack(np.meshgrid(*(np.arange(n) for n in grid.shape), indexing="ij")).reshape(3, -1)
    idx = (matrix @ q + offset[:, None]).T
    margin = np.asarray([6, 3, 3])  # box half-widths: the edge replication touches the outer voxels
    inside = np.all((idx >= margin) & (idx <= np.asarray(arr.shape) - 1 - margin), axis=1).reshape(grid.shape)
    assert inside.sum() > 1000
    assert np.allclose(fast[inside], truth[inside], atol=5e-2)  # sheared affine inverted exactly
    assert np.abs(general[inside] - truth[inside]).max() < 6.0  # nearest: within half a voxel of the ramp


def test_flipped_and_reversed_acquisitions_give_the_same_volume():
    base = CASES["axial"]
    flipped = CASES["axial_flipped"]
    outs = []
    for acq in (base, flipped):
        arr, aff = volume(acq, "MR")
        grid = plan_grid(aff, arr.shape, SPACING, PATCH)
        outs.append((resample(arr, aff, grid, order=1, cval=0.0), grid))
    (a, ga), (b, gb) = outs
    assert ga.shape == gb.shape and np.allclose(ga.direction, gb.direction) and np.allclose(ga.origin, gb.origin)
    assert np.allclose(a, b, atol=1e-3)


def test_canonical_axes_point_the_documented_way():
    expect = {
        "axial": ([0, 0, 1], [0, 1, 0], [1, 0, 0]),
        "coronal": ([0, 1, 0], [0, 0, -1], [1, 0, 0]),
        "sagittal": ([1, 0, 0], [0, 0, -1], [0, 1, 0]),
    }
    for plane, axes in expect.items():
        for flips in ((False, False, False), (True, True, True), (True, False, True)):
            acq = Acquisition(
                plane, (20, 64, 64), (1.0, 1.0), 4.0, flip_cols=flips[0], flip_rows=flips[1], reverse_slices=flips[2]
            )
            grid = plan_grid(acq.affine(), acq.shape, SPACING, PATCH)
            assert grid.orientation == plane
            assert np.allclose(grid.direction, np.asarray(axes, dtype=float).T, atol=1e-9)


def test_pad_mode_keeps_everything():
    acq = CASES["coronal"]
    grid = plan_grid(acq.affine(), acq.shape, SPACING, PATCH, fit="pad")
    assert all(s >= f and s % p == 0 for s, f, p in zip(grid.shape, grid.full_shape, PATCH))
    assert all(m <= 0 for m in grid.margin)


def _as_stored(affine: np.ndarray, decimals: int) -> np.ndarray:
    """``affine`` as a DICOM header gives it back: direction cosines rounded to ``decimals`` places (decimal
    strings), slice positions to 0.001 mm."""
    out = affine.copy()
    for col in (0, 1):
        sp = np.linalg.norm(out[:3, col])
        out[:3, col] = np.round(out[:3, col] / sp, decimals) * sp
    out[:3, 2:] = np.round(out[:3, 2:], 3)
    return out


ROUNDED = {  # acquisitions whose direction cosines are not exact in decimal (thin CT: box filter on every axis)
    "oblique": CASES["oblique"],
    "oblique_sagittal": CASES["oblique_sagittal"],
    "thin_oblique_ct": Acquisition("axial", (64, 128, 128), (0.6, 0.6), 0.8, oblique_deg=7.3),
}


@pytest.mark.parametrize("name", sorted(ROUNDED))
def test_rounded_header_cosines_take_the_fast_path_with_the_general_paths_values(name, monkeypatch):
    acq = ROUNDED[name]
    exact = acq.affine()
    arr = ramp(lps_grid(exact, acq.shape)) + volume(acq, "CT")[0] * 0.01
    stored = _as_stored(exact, 6)
    grid = plan_grid(stored, arr.shape, SPACING, PATCH)
    matrix, _ = index_map(grid, stored)
    assert rs.separable_plan(matrix, grid.shape, max_shift=0.0) is None  # not exactly separable ...
    assert rs.separable_plan(matrix, grid.shape) is not None  # ... but within the bound
    calls = []
    real = rs.ndimage.affine_transform
    monkeypatch.setattr(rs.ndimage, "affine_transform", lambda *a, **k: calls.append(1) or real(*a, **k))
    fast = resample(arr.copy(), stored, grid, order=1, cval=-1000.0)
    assert not calls
    monkeypatch.setattr(rs, "separable_plan", lambda m, shape: None)
    general = resample(arr.copy(), stored, grid, order=1, cval=-1000.0)
    assert calls == [1]
    # the same samples up to the dropped cross terms: the ramp (about 4 per mm) moves 1e-3 in 0.0003 mm
    assert np.abs(fast - general).max() < 1e-3


def test_a_small_real_rotation_is_not_taken_for_rounding():
    """Positive control of the bound: in-plane axes turned by 0.2 degrees move edge samples by about a third of a
    voxel, so the map goes to the general path."""
    acq = CASES["thin_ct"]
    aff = acq.affine()
    t = np.radians(0.2)
    turn = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    aff[:3, :2] = turn @ aff[:3, :2]
    grid = plan_grid(acq.affine(), acq.shape, SPACING, PATCH)  # the output frame of the unturned series
    matrix, _ = index_map(grid, aff)
    assert rs.separable_plan(matrix, grid.shape) is None
    assert rs.separable_plan(index_map(grid, acq.affine())[0], grid.shape) is not None
