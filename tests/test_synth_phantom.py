"""Synthetic phantom: geometry of rendered series, laterality, tissue values, every finding kind."""

import numpy as np
import pytest

from neurovfm.synth.anatomy import load_anatomy
from neurovfm.synth.catalog import CATALOG
from neurovfm.synth.geometry import Acquisition
from neurovfm.synth.lesions import Layer, inner_table_point, normal_at
from neurovfm.synth.phantom import build_patient, render

CLEAN_CT = {"noise_hu": 0.0}
CLEAN_MR = {"noise": 0.0, "bias": 0.0}


@pytest.fixture(scope="module")
def normal():
    return build_patient(np.random.default_rng(11), 50, "F", [])


def _value(p, native, modality, seq):
    """Noise-free value at one native point (a 1-voxel, 1-mm acquisition centred on it)."""
    acq = Acquisition("axial", 1, 1, 1, (1.0, 1.0), 1.0, 1.0, center_lps=tuple(p.to_lps(native)))
    scanner = CLEAN_CT if modality == "CT" else CLEAN_MR
    return float(render(p, modality, seq, acq, np.random.default_rng(0), scanner)[0, 0, 0])


def _with_marker(p, native, radius=1.5):
    anat = load_anatomy()
    box = anat.box(native, radius + 2)
    x, y, z = anat.axes_native(box)
    d = np.sqrt((x - native[0]) ** 2 + (y - native[1]) ** 2 + (z - native[2]) ** 2)
    frac = np.clip(radius - d + 0.5, 0, 1).astype(np.float32)
    p.layers.append(Layer("calcification", box, frac))
    p.clear_cache()


ACQS = {
    "axial": dict(plane="axial", pixel_spacing=(0.9, 0.9), slice_thickness=2.0, spacing_between_slices=2.0),
    "sagittal": dict(plane="sagittal", pixel_spacing=(1.0, 1.0), slice_thickness=2.0, spacing_between_slices=2.0),
    "coronal": dict(
        plane="coronal", pixel_spacing=(1.0, 1.0), slice_thickness=2.0, spacing_between_slices=2.0, reverse_order=True
    ),
    "oblique": dict(
        plane="axial",
        pixel_spacing=(1.0, 1.0),
        slice_thickness=2.0,
        spacing_between_slices=2.0,
        oblique_deg=(12.0, -7.0, 5.0),
    ),
    "tilted": dict(
        plane="axial", pixel_spacing=(0.8, 0.8), slice_thickness=2.5, spacing_between_slices=2.5, gantry_tilt_deg=18.0
    ),
}


@pytest.mark.parametrize("name", sorted(ACQS))
def test_marker_lands_at_its_lps_point(name):
    p = build_patient(np.random.default_rng(5), 40, "M", [])
    native = np.array([22.0, 8.0, 20.0])
    target = p.to_lps(native)
    acq = Acquisition(rows=64, cols=64, n_slices=24, center_lps=tuple(target + [3.0, -4.0, 2.0]), **ACQS[name])
    rng = np.random.default_rng(0)
    before = render(p, "CT", "ct", acq, rng, CLEAN_CT)
    _with_marker(p, native)
    diff = render(p, "CT", "ct", acq, rng, CLEAN_CT) - before
    k, j, i = np.unravel_index(np.argmax(diff), diff.shape)
    got = (acq.voxel_to_lps() @ [i, j, k, 1.0])[:3]
    voxel_diag = np.linalg.norm(acq.voxel_to_lps()[:3, :3], axis=0).max()
    assert diff.max() > 30
    assert np.linalg.norm(got - target) <= voxel_diag + 0.5


@pytest.mark.parametrize("reverse", [False, True])
def test_left_lesion_lands_at_larger_x(reverse):
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    base = build_patient(rng_a, 60, "M", [])
    p = build_patient(rng_b, 60, "M", [{"kind": "ich_parenchymal", "side": "left", "size": "medium"}])
    cx = p.head_center_lps[0]
    assert p.findings[0]["center_lps"][0] > cx
    acq = Acquisition("axial", 96, 96, 30, (2.2, 2.2), 5.0, 5.0, center_lps=p.head_center_lps, reverse_order=reverse)
    diff = render(p, "CT", "ct", acq, np.random.default_rng(0), CLEAN_CT) - render(
        base, "CT", "ct", acq, np.random.default_rng(0), CLEAN_CT
    )
    k, j, i = np.nonzero(diff > 20)
    assert len(k) > 10
    pts = acq.voxel_to_lps() @ np.stack([i, j, k, np.ones_like(i)]).astype(float)
    assert pts[0].mean() > cx + 10


def _ventricle_x(p):
    """x centroid (native mm) of CSF in a box around the lateral ventricles."""
    anat = load_anatomy()
    box = anat.box([0.0, 10.0, 18.0], (25.0, 25.0, 8.0))
    x, _, _ = anat.axes_native(box)
    csf = p.frac[0][box].astype(float)
    return float((csf * x).sum() / csf.sum())


def test_midline_shift_to_the_right_moves_midline_minus_x():
    base = build_patient(np.random.default_rng(8), 55, "F", [])
    p = build_patient(np.random.default_rng(8), 55, "F", [{"kind": "midline_shift", "side": "right", "size": "large"}])
    assert _ventricle_x(p) < _ventricle_x(base) - 3.0
    assert p.findings[0]["shift_mm"] > 5


def test_ct_tissue_values(normal):
    anat = load_anatomy()
    assert _value(normal, [0.0, 0.0, 140.0], "CT", "ct") < -990  # air above the head
    wm = _value(normal, [26.0, 10.0, 28.0], "CT", "ct")
    assert 20 <= wm <= 45
    edge = inner_table_point(anat, [0.7, 0.1, 0.7])
    assert _value(normal, edge + normal_at(anat, edge) * anat.skull_mm / 2, "CT", "ct") > 300
    ich = build_patient(
        np.random.default_rng(4), 60, "M", [{"kind": "ich_parenchymal", "side": "right", "size": "large"}]
    )
    centre = ich.lps_to_native(ich.findings[0]["center_lps"])
    assert _value(ich, centre, "CT", "ct") > wm + 25


def test_mr_contrasts(normal):
    anat = load_anatomy()
    k = np.argwhere(anat.vent)
    vent = (anat.index_to_native @ np.r_[k[len(k) // 2][::-1], 1.0])[:3]
    wm = [26.0, 10.0, 28.0]
    assert _value(normal, wm, "MR", "t1") > 2 * _value(normal, vent, "MR", "t1")
    assert _value(normal, vent, "MR", "t2") > 2 * _value(normal, wm, "MR", "t2")
    ms = build_patient(np.random.default_rng(2), 35, "F", [{"kind": "ms_lesions", "side": None, "size": "large"}])
    layer = max(ms.layers, key=lambda lay: lay.frac.sum())
    assert layer.tissue == "ms_plaque"
    k = np.unravel_index(np.argmax(layer.frac), layer.frac.shape)
    idx = [k[n] + layer.box[n].start for n in range(3)]
    plaque = (anat.index_to_native @ np.r_[idx[::-1], 1.0])[:3]
    assert _value(ms, plaque, "MR", "flair") > 1.5 * _value(ms, wm, "MR", "flair")
    st = build_patient(np.random.default_rng(6), 70, "M", [{"kind": "stroke_acute", "side": "left", "size": "large"}])
    c = st.lps_to_native(st.findings[0]["center_lps"])
    assert _value(st, c, "MR", "dwi") > 1.8 * _value(st, c * np.array([-1, 1, 1]), "MR", "dwi")


@pytest.fixture(scope="module")
def base21():
    return build_patient(np.random.default_rng(21), 65, "M", [])


ACQ_WHOLE = Acquisition("axial", 80, 80, 40, (2.6, 2.6), 5.0, 5.0)


@pytest.mark.parametrize("kind", sorted(CATALOG))
def test_every_kind_renders_and_changes_the_image(kind, base21):
    info = CATALOG[kind]
    p = build_patient(np.random.default_rng(21), 65, "M", [{"kind": kind, "side": "right", "size": "large"}])
    assert p.head_center_lps == base21.head_center_lps  # same seed, same pose: only the finding differs
    f = p.findings[0]
    for key in ("location", "center_lps", "volume_ml"):
        assert key in f
    acq = Acquisition("axial", 80, 80, 40, (2.6, 2.6), 5.0, 5.0, center_lps=p.head_center_lps)
    changed = {}
    if info.ct_labels:
        a, b = (render(q, "CT", "ct", acq, np.random.default_rng(0), CLEAN_CT) for q in (p, base21))
        changed["ct"] = float(np.abs(a - b).max()) / 7.0  # HU; > 1 means visible
    if info.mri_labels:
        for s in ("t2", "flair", "dwi"):
            a, b = (render(q, "MR", s, acq, np.random.default_rng(0), CLEAN_MR) for q in (p, base21))
            changed[s] = float(np.abs(a - b).max()) / (0.1 * float(np.percentile(b, 99)))
    assert max(changed.values()) > 1.0, (kind, changed)


def test_deterministic_by_seed():
    f = [{"kind": "sdh_acute", "side": "left", "size": "small"}, {"kind": "svid", "side": None, "size": "small"}]
    acq = Acquisition("axial", 48, 48, 12, (4.0, 4.0), 6.0, 6.0)
    out = []
    for _ in range(2):
        p = build_patient(np.random.default_rng(99), 72, "F", f)
        out.append((p.findings, render(p, "MR", "flair", acq, np.random.default_rng(1), {"field_strength": 3.0})))
    assert out[0][0] == out[1][0]
    np.testing.assert_array_equal(out[0][1], out[1][1])
    assert out[0][1].dtype == np.float32 and out[0][1].min() >= 0


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="unknown kind"):
        build_patient(np.random.default_rng(0), 50, "F", [{"kind": "unicorn"}])
    with pytest.raises(ValueError, match="size"):
        build_patient(np.random.default_rng(0), 50, "F", [{"kind": "edh", "size": "huge"}])
    p = build_patient(np.random.default_rng(0), 50, "F", [])
    with pytest.raises(ValueError, match="not a CT sequence"):
        render(p, "CT", "t1", Acquisition("axial", 4, 4, 2, (1, 1), 1, 1), np.random.default_rng(0))


def test_a_patients_studies_image_one_person():
    """Head size and brain anatomy belong to the person: two studies of one person (other poses, ages, findings)
    share them; another person differs. Ageing and findings never write into the person's own maps."""
    from neurovfm.synth.phantom import build_person

    person = build_person(np.random.default_rng(1), "F", variation_mm=4.0)
    frac0, vent0 = person.frac.copy(), person.vent.copy()
    first = build_patient(np.random.default_rng(2), 40, "F", [], person=person)
    later = build_patient(
        np.random.default_rng(3), 80, "F", [{"kind": "glioma", "side": "left", "size": "large"}], person=person
    )
    np.testing.assert_array_equal(person.frac, frac0)
    np.testing.assert_array_equal(person.vent, vent0)
    sizes = [np.linalg.svd(p.native_to_lps[:3, :3], compute_uv=False) for p in (first, later)]
    np.testing.assert_allclose(sizes[0], sizes[1], rtol=1e-12)  # the same head size ...
    np.testing.assert_allclose(sorted(sizes[0]), sorted(person.scale), rtol=1e-12)
    assert not np.allclose(first.native_to_lps, later.native_to_lps)  # ... placed otherwise in the scanner
    assert (later.frac != first.frac).mean() > 0.001  # older, with a glioma
    other = build_person(np.random.default_rng(4), "F", variation_mm=4.0)
    assert not np.allclose(other.scale, person.scale)
    assert (other.frac != person.frac).mean() > 0.01  # another brain
    template = build_person(np.random.default_rng(4), "F", variation_mm=0.0)
    np.testing.assert_array_equal(template.frac, load_anatomy().frac)  # no variation: the template's anatomy
