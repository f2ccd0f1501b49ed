"""Window formulas, rounding, 4-bit packing, foreground and token masks, and exclusion reasons."""

import copy

import numpy as np
import pytest
from skimage.filters import threshold_otsu

from neurovfm.config import load_config
from neurovfm.preprocess import foreground, quantize, windows
from volume_factory import Acquisition, volume
from neurovfm.preprocess.resample import resample
from neurovfm.preprocess.volume import PreprocessError, channel_layout, plan, process

PCFG = load_config("config.yaml")["preprocess"]


def test_ct_window_formula_exact():
    hu = np.array([-1000, 0, 39.999, 40, 80, 1000], dtype=np.float32)
    v = windows.ct_window(hu, 80, 40)
    assert np.allclose(v, [0, 0, 0.5 - 0.001 / 80, 0.5, 1, 1], atol=1e-6)
    assert np.allclose(windows.ct_window(np.float32([-800, 600, 2000]), 2800, 600), [0, 0.5, 1])
    assert np.allclose(windows.ct_window(np.float32([-20, 80, 180]), 200, 80), [0, 0.5, 1])


def test_rounding_is_half_up_and_levels_are_exact():
    v = np.array([0, 0.5 / 255 - 1e-6, 0.5 / 255 + 1e-6, 0.5, 1.0], dtype=np.float32)
    assert quantize.quantize(v, 8).tolist() == [0, 0, 1, 128, 255]
    v4 = np.array([0, 0.5 / 15 - 1e-6, 0.5 / 15 + 1e-6, 0.5, 1.0], dtype=np.float32)
    assert quantize.quantize(v4, 4).tolist() == [0, 0, 1, 8, 15]
    assert quantize.dequantize_levels(np.arange(16, dtype=np.uint8), 4).tolist() == [17 * k for k in range(16)]


def test_nibble_packing_round_trips_every_pair():
    hi, lo = np.meshgrid(np.arange(16, dtype=np.uint8), np.arange(16, dtype=np.uint8), indexing="ij")
    packed = quantize.pack_nibbles(hi, lo)
    assert packed.dtype == np.uint8 and sorted(packed.ravel().tolist()) == list(range(256))
    assert np.array_equal(packed, (hi.astype(int) * 16 + lo).astype(np.uint8))
    assert np.array_equal(quantize.unpack_nibble(packed, True, False), hi)
    assert np.array_equal(quantize.unpack_nibble(packed, False, False), lo)
    assert np.array_equal(quantize.unpack_nibble(packed, True), hi * 17)
    with pytest.raises(ValueError):
        quantize.pack_nibbles(np.array([16], dtype=np.uint8), None)


def test_channel_layout_pairs_the_four_bit_windows():
    layout = channel_layout("CT", PCFG)
    assert [(c.name, c.bits, c.plane, c.nibble) for c in layout] == [
        ("brain", 8, 0, None),
        ("blood", 4, 1, "high"),
        ("bone", 4, 1, "low"),
    ]
    assert [(c.name, c.plane) for c in channel_layout("MR", PCFG)] == [("mri", 0)]


def test_ct_planes_and_masks_follow_the_formulas():
    arr, aff = volume(Acquisition("axial", (30, 100, 100), (1.5, 1.5), 5.0), "CT", noise=3.0)
    grid = plan(aff, arr.shape, PCFG)
    hu = resample(arr.copy(), aff, grid, 1, PCFG["ct_fill_hu"])
    res = process(arr, aff, "CT", grid, PCFG, keep_voxel_mask=True)
    brain = np.floor(np.clip((hu - 0.0) / 80.0, 0, 1) * 255 + 0.5).astype(np.uint8)
    blood = np.floor(np.clip((hu + 20.0) / 200.0, 0, 1) * 15 + 0.5).astype(np.uint8)
    bone = np.floor(np.clip((hu + 800.0) / 2800.0, 0, 1) * 15 + 0.5).astype(np.uint8)
    assert np.array_equal(res.planes[0], brain)
    assert np.array_equal(res.planes[1], (blood << 4) | bone)
    assert np.array_equal(res.voxel_mask, hu > -500)
    counts = res.voxel_mask.reshape(grid.shape[0] // 4, 4, grid.shape[1] // 16, 16, grid.shape[2] // 16, 16)
    frac = counts.mean(axis=(1, 3, 5))
    assert np.array_equal(res.token_mask, frac >= PCFG["token_foreground_fraction"])
    n, s1, s2 = res.moments["brain"]
    fg = brain[res.voxel_mask].astype(np.int64)
    assert (n, s1, s2) == (fg.size, int(fg.sum()), int((fg * fg).sum()))
    assert 0.2 < res.token_mask.mean() < 0.9


def test_mr_percentiles_and_otsu_mask():
    arr, aff = volume(Acquisition("sagittal", (24, 120, 110), (1.2, 1.2), 5.0), "MR", noise=8.0, seed=3)
    grid = plan(aff, arr.shape, PCFG)
    lo, hi = np.percentile(arr, [0.5, 99.5])
    vals = resample(arr.copy(), aff, grid, 1, float(arr.min()), smooth=False)
    res = process(arr, aff, "MR", grid, PCFG, keep_voxel_mask=True)
    assert res.intensity["p_lo"] == pytest.approx(lo) and res.intensity["p_hi"] == pytest.approx(hi)
    q = np.floor(np.clip((vals - lo) / (hi - lo), 0, 1) * 255 + 0.5).astype(np.uint8)
    assert np.abs(res.planes[0].astype(int) - q).max() <= 1  # float32 vs float64 at level boundaries
    assert np.array_equal(res.voxel_mask, res.planes[0] > threshold_otsu(res.planes[0], nbins=256))


def test_token_rule_all_voxels_reproduces_the_authors():
    mask = np.ones((4, 32, 16), dtype=bool)
    mask[0, 0, 0] = False
    assert foreground.token_mask(mask, (4, 16, 16), 1.0).tolist() == [[[False], [True]]]
    assert foreground.token_mask(mask, (4, 16, 16), 0.5).tolist() == [[[True], [True]]]


def _bad(kind):
    arr, aff = volume(Acquisition("axial", (20, 64, 64), (1.0, 1.0), 4.0), "CT")
    if kind == "nan":
        arr[3, 4, 5] = np.nan
    elif kind == "inf":
        arr[0, 0, 0] = np.inf
    elif kind == "constant":
        arr[:] = 40.0
    return arr, aff


@pytest.mark.parametrize(
    "kind,reason", [("nan", "non_finite_values"), ("inf", "non_finite_values"), ("constant", "constant_image")]
)
def test_bad_pixels_raise_with_reason(kind, reason):
    arr, aff = _bad(kind)
    grid = plan(aff, arr.shape, PCFG)
    with pytest.raises(PreprocessError) as err:
        process(arr, aff, "CT", grid, PCFG)
    assert err.value.reason == reason


def test_bad_geometry_raises_with_reason():
    tiny = Acquisition("axial", (3, 64, 64), (1.0, 1.0), 1.0)
    with pytest.raises(PreprocessError, match="smaller_than_patch"):
        plan(tiny.affine(), tiny.shape, PCFG)
    absurd = Acquisition("axial", (20, 64, 64), (0.001, 0.001), 4.0)
    with pytest.raises(PreprocessError, match="absurd_spacing"):
        plan(absurd.affine(), absurd.shape, PCFG)
    huge = Acquisition("axial", (20, 64, 64), (15.0, 15.0), 4.0)
    with pytest.raises(PreprocessError, match="absurd_extent"):
        plan(huge.affine(), huge.shape, PCFG)
    with pytest.raises(PreprocessError, match="bad_affine"):
        plan(np.zeros((4, 4)), (20, 64, 64), PCFG)
    cfg = copy.deepcopy(PCFG)
    cfg["fit"] = "pad"
    ok = Acquisition("axial", (5, 20, 20), (1.0, 1.0), 4.0)
    assert plan(ok.affine(), ok.shape, cfg).shape == (8, 32, 32)


def test_ct_window_planes_do_not_follow_yaml_key_order():
    """Issue 18, item 6: the planes of the CT windows are fixed by code (8-bit first, then 4-bit pairs, each
    by name), whatever order the keys of preprocess.ct_windows are written in."""
    forward = copy.deepcopy(load_config()["preprocess"])
    backward = {**forward, "ct_windows": dict(reversed(list(forward["ct_windows"].items())))}
    assert list(backward["ct_windows"]) != list(forward["ct_windows"])
    a, b = channel_layout("CT", forward), channel_layout("CT", backward)
    assert [c.as_dict() for c in a] == [c.as_dict() for c in b]
    assert [(c.name, c.plane, c.nibble) for c in a] == [("brain", 0, None), ("blood", 1, "high"), ("bone", 1, "low")]
