"""The synthetic pathology leaves traces in its surroundings, and anatomy varies beyond a pose.

Each test compares a patient with a finding against the same patient (same random stream up to the finding)
without it, or a variation setting against none, on the 1-mm native maps the scanner images.
"""

import numpy as np
import pytest

from neurovfm.synth.anatomy import CH, load_anatomy
from neurovfm.synth.phantom import _volume, build_patient, build_person

SKULL = ("bone", "diploe", "fat", "soft")


def _patient(findings, seed=3, variation_mm=0.0, age=60):
    return build_patient(np.random.default_rng(seed), age, "M", findings, variation_mm=variation_mm)


def _ring_mean(vol, anat, centre, lo_mm, hi_mm, mask):
    x, y, z = anat.axes_native()
    d = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
    ring = (d >= lo_mm) & (d < hi_mm) & mask
    return float(vol[ring].mean()), int(ring.sum())


def test_variation_moves_brain_not_skull_and_grows_with_amplitude():
    base = _patient([])
    anat = load_anatomy()
    changed = {}
    for amp in (2.0, 6.0):
        p = _patient([], variation_mm=amp)
        for name in SKULL:
            assert np.array_equal(p.frac[CH[name]], base.frac[CH[name]]), name
        d = np.abs(p.frac[CH["gm"]].astype(int) - base.frac[CH["gm"]])
        changed[amp] = (float((d > 25).mean()), float(d.mean()))  # share of voxels changed, mean change
        # the displacement fades to zero at the inner table: cortex next to the skull moves less than deep brain
        outer = (anat.sdist > -2.5) & (anat.sdist < -0.5)
        deep = (anat.sdist > -30) & (anat.sdist < -12)
        assert (d[outer] > 25).mean() < 0.5 * (d[deep] > 25).mean()
    assert changed[2.0][0] > 0.005
    # the mean change grows with the amplitude (the share past a threshold saturates where the cortex is dense)
    assert changed[6.0][1] > 1.5 * changed[2.0][1]
    # a different person's stream gives a different brain (not one fixed deformation); persons before ageing
    template = anat.frac[CH["gm"]].astype(int)
    d_first, d_other = (
        np.abs(build_person(np.random.default_rng(s), "M", variation_mm=6.0).frac[CH["gm"]] - template) > 25
        for s in (3, 4)
    )
    overlap = (d_other & d_first).sum() / max(1, min(d_other.sum(), d_first.sum()))
    assert overlap < 0.7


def test_variation_zero_is_the_template_and_keeps_pose():
    a, b = _patient([]), _patient([], variation_mm=0.0)
    assert np.array_equal(a.frac, b.frac)
    v = _patient([], variation_mm=4.0)
    assert np.allclose(v.native_to_lps, a.native_to_lps)  # the pose is drawn first, before any variation


@pytest.mark.parametrize("kind", ["ich_parenchymal", "glioma"])
def test_edema_halo_reaches_further_for_larger_lesions(kind):
    """FLAIR just outside the lesion is raised against the same head without it, and the halo is wider and the
    edema larger for a large lesion than for a small one."""
    anat = load_anatomy()
    base = _patient([])
    flair0, _ = _volume(base, "flair", None)
    reach = {}
    for size in ("small", "large"):
        p = _patient([{"kind": kind, "side": "left", "size": size}])
        edema = sum(float(layer.frac.sum()) for layer in p.layers if layer.tissue == "edema")
        centre = p.lps_to_native(p.findings[0]["center_lps"])
        radius = (3 * p.findings[0]["volume_ml"] * 1000 / (4 * np.pi)) ** (1 / 3)
        flair, _ = _volume(p, "flair", None)
        brain = anat.sdist < -3
        raised = []
        for lo in np.arange(radius + 2, radius + 40, 4.0):
            m1, n = _ring_mean(flair, anat, centre, lo, lo + 4, brain)
            m0, _ = _ring_mean(flair0, anat, centre, lo, lo + 4, brain)
            raised.append((lo - radius, (m1 - m0) / m0, n))
        # how far beyond the lesion's own radius the ring is still 10 % brighter than without the lesion
        reach[size] = max([r for r, rel, n in raised if rel > 0.10 and n > 50], default=0.0)
        reach[size + "_edema"] = edema
    assert reach["small"] > 0
    assert reach["large"] > reach["small"] + 4
    assert reach["large_edema"] > 3 * reach["small_edema"]


def _sulcal_and_ventricular_csf(p):
    anat = load_anatomy()
    csf = p.frac[CH["csf"]].astype(float) / 255
    cortex = (anat.sdist < -1.5) & (anat.sdist > -10) & ~anat.region("posterior_fossa")  # the convexity's sulci
    vent_box = anat.box([0.0, 10.0, 18.0], (25.0, 30.0, 12.0))
    vent = np.zeros_like(cortex)
    vent[vent_box] = True
    return float(csf[cortex & ~vent].sum()), float(csf[vent].sum())


def test_hydrocephalus_closes_sulci_and_atrophy_opens_them():
    base = _patient([], age=40)
    s0, v0 = _sulcal_and_ventricular_csf(base)
    hyd = _patient([{"kind": "ventriculomegaly", "size": "large"}], age=40)
    atr = _patient([{"kind": "atrophy", "size": "large"}], age=40)
    sh, vh = _sulcal_and_ventricular_csf(hyd)
    sa, va = _sulcal_and_ventricular_csf(atr)
    assert vh > 1.3 * v0 and va > 1.05 * v0  # both widen the ventricles
    assert sh < 0.8 * s0  # hydrocephalus effaces the sulci
    assert sa > 1.1 * s0  # atrophy widens them
    # marked hydrocephalus: interstitial edema along the ventricles; none in the small grade
    assert any(layer.tissue == "edema" for layer in hyd.layers)
    small = _patient([{"kind": "ventriculomegaly", "size": "small"}], age=40)
    assert not any(layer.tissue == "edema" for layer in small.layers)


def _ventricle_x(p):
    anat = load_anatomy()
    box = anat.box([0.0, 10.0, 18.0], (25.0, 25.0, 8.0))
    x, _, _ = anat.axes_native(box)
    csf = p.frac[CH["csf"]][box].astype(float)
    return float((csf * x).sum() / csf.sum())


def test_large_glioma_pushes_the_midline_away():
    base = _patient([])
    left = _patient([{"kind": "glioma", "side": "left", "size": "large"}])
    small = _patient([{"kind": "glioma", "side": "left", "size": "small"}])
    # a left mass moves the midline to the right (native -x); a small one hardly at all
    assert _ventricle_x(left) < _ventricle_x(base) - 1.0
    assert abs(_ventricle_x(small) - _ventricle_x(base)) < abs(_ventricle_x(left) - _ventricle_x(base))


def test_generator_fingerprint_follows_the_code(tmp_path):
    from neurovfm.synth.fingerprint import generator_fingerprint

    for name, text in (("a.py", "x = 1\n"), ("b.py", "y = 2\n")):
        (tmp_path / name).write_text(text)
    first = generator_fingerprint(tmp_path)
    assert generator_fingerprint(tmp_path) == first  # stable
    (tmp_path / "b.py").write_text("y = 3\n")
    assert generator_fingerprint(tmp_path) != first  # any edit changes it
    (tmp_path / "b.py").write_text("y = 2\n")
    assert generator_fingerprint(tmp_path) == first
    (tmp_path / "c.txt").write_text("not code")
    assert generator_fingerprint(tmp_path) == first  # only the generator's Python files count
    assert len(generator_fingerprint()) == 16  # the package's own generator
