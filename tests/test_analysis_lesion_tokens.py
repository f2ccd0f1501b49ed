"""Token-level lesion ground truth and probe: layer maps against the boxes, the lesion centre's token against
SimpleITK's physical-point -> index, labels against hand counts, grouped folds keep patients apart, the paired
patient bootstrap (the project's cluster-bootstrap engine) against a naive loop."""

from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from sklearn.metrics import roc_auc_score

from neurovfm.analysis import lesion_tokens as lt
from neurovfm.synth.lesions import Layer


class _Anat:
    """Template grid (z, y, x) at 1 mm; index (kx, ky, kz) -> native mm as the real anatomy's convention."""

    origin_mni = np.array([-40.0, -50.0, -30.0])
    shape = (70, 100, 80)

    @property
    def index_to_native(self):
        a = np.diag([-1.0, -1.0, 1.0, 1.0])
        a[:3, 3] = self.origin_mni * np.array([-1.0, -1.0, 1.0])
        return a


def _ball_layer(anat, centre_zyx, radius):
    z, y, x = np.ogrid[: anat.shape[0], : anat.shape[1], : anat.shape[2]]
    d2 = (z - centre_zyx[0]) ** 2 + (y - centre_zyx[1]) ** 2 + (x - centre_zyx[2]) ** 2
    box = tuple(slice(c - radius - 1, c + radius + 2) for c in centre_zyx)
    return Layer("blood_acute", box, (d2 <= radius**2)[box].astype(np.float32))


def test_layer_maps_take_the_max_of_overlapping_layers():
    anat = _Anat()
    a = Layer("edema", (slice(0, 4), slice(0, 4), slice(0, 4)), np.full((4, 4, 4), 0.4, np.float32))
    b = Layer("edema", (slice(2, 6), slice(2, 6), slice(2, 6)), np.full((4, 4, 4), 0.7, np.float32))
    c = Layer("blood_acute", (slice(10, 12), slice(10, 12), slice(10, 12)), np.ones((2, 2, 2), np.float32))
    maps = lt.layer_maps(SimpleNamespace(layers=[a, b, c]), anat.shape)
    assert set(maps) == {"edema", "blood_acute"}
    assert maps["edema"][1, 1, 1] == pytest.approx(0.4) and maps["edema"][3, 3, 3] == pytest.approx(0.7)
    assert maps["edema"][5, 5, 5] == pytest.approx(0.7) and maps["edema"].sum() == pytest.approx(
        0.4 * (64 - 8) + 0.7 * 64
    )
    assert maps["blood_acute"].sum() == 8


def test_token_means_against_hand_count():
    v = np.zeros((4, 32, 16), np.float32)
    v[:, :16, :8] = 1.0  # half of token (0, 0, 0)
    t = lt.token_means(v, (4, 16, 16))
    assert t.shape == (1, 2, 1) and t[0, 0, 0] == pytest.approx(0.5) and t[0, 1, 0] == 0
    with pytest.raises(ValueError, match="whole number"):
        lt.token_means(np.zeros((5, 16, 16)), (4, 16, 16))


def test_lesion_centre_token_agrees_with_simpleitk():
    """A ball lesion in the template, a rotated and shifted patient, an oblique volume: the token that SimpleITK
    places the lesion centre in is a lesion token; tokens far away are lesion-free."""
    anat = _Anat()
    centre_zyx = (35, 50, 40)
    layer = _ball_layer(anat, centre_zyx, 9)
    th = np.deg2rad(12.0)
    rot = np.array([[np.cos(th), -np.sin(th), 0.0], [np.sin(th), np.cos(th), 0.0], [0.0, 0.0, 1.0]])
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rot, [4.0, -6.0, 10.0]
    patient = SimpleNamespace(layers=[layer], native_to_lps=pose)
    # volume: 16 slices of 4 mm along LPS z, 64 x 64 in-plane at 1 mm; array axes (slice, row, col)
    direction = np.eye(3)[:, [2, 1, 0]]  # columns: slice -> +z, row -> +y, col -> +x
    origin = np.array([-30.0, -40.0, -20.0])
    entry = {"direction_lps": direction.tolist(), "origin_lps": origin.tolist(), "shape": [16, 64, 64]}
    spacing, patch = [4.0, 1.0, 1.0], (4, 16, 16)
    maps = lt.layer_maps(patient, anat.shape)
    frac = lt.volume_token_fractions(entry, spacing, patch, patient, anat, maps)["blood_acute"]
    # lesion centre in scanner LPS: template index (z, y, x) -> native -> LPS
    kx, ky, kz = centre_zyx[2], centre_zyx[1], centre_zyx[0]
    lps = (pose @ anat.index_to_native @ [kx, ky, kz, 1.0])[:3]
    img = sitk.Image([64, 64, 16], sitk.sitkUInt8)  # SimpleITK sizes and indices run (col, row, slice)
    img.SetOrigin(origin.tolist())
    img.SetSpacing([spacing[2], spacing[1], spacing[0]])
    img.SetDirection(direction[:, [2, 1, 0]].ravel().tolist())
    col, row, sl = img.TransformPhysicalPointToIndex(lps.tolist())
    tok = (sl // patch[0], row // patch[1], col // patch[2])

    # expected fraction of a token: its voxel centres (placed by SimpleITK) within the ball's radius in LPS mm
    def expected(t):
        pts = [
            img.TransformIndexToPhysicalPoint((c, r, z))
            for z in range(t[0] * 4, t[0] * 4 + 4)
            for r in range(t[1] * 16, t[1] * 16 + 16)
            for c in range(t[2] * 16, t[2] * 16 + 16)
        ]
        return float(np.mean(np.linalg.norm(np.asarray(pts) - lps, axis=1) <= 9.0))

    assert expected(tok) > 0.1
    for t in [tok, (tok[0], tok[1], tok[2] + 1), (tok[0] + 1, tok[1], tok[2]), (tok[0], tok[1] - 1, tok[2])]:
        assert frac[t] == pytest.approx(expected(t), abs=0.06)
    far = np.array(np.unravel_index(np.arange(frac.size), frac.shape)).T
    dist = np.abs(far - np.array(tok)).max(axis=1)
    assert np.all(frac.ravel()[dist >= 2] == 0)


def test_label_tokens_positive_control_and_margin():
    grid = np.zeros((3, 4, 4), np.float32)
    grid[1, 1, 1] = 0.8  # lesion
    grid[1, 1, 2] = 0.1  # partial-volume edge: neither
    other = np.zeros_like(grid)
    other[0, 3, 3] = 0.5  # a second tissue's lesion
    coords = np.array(np.unravel_index(np.arange(grid.size), grid.shape)).T
    label, tissue = lt.label_tokens(coords, {"edema": grid, "blood_acute": other}, positive=0.3, negative=0.02)
    lab = label.reshape(grid.shape)
    tis = tissue.reshape(grid.shape)
    assert lab[1, 1, 1] == 1 and tis[1, 1, 1] == "edema" and lab[0, 3, 3] == 1 and tis[0, 3, 3] == "blood_acute"
    assert lab[1, 1, 2] == -1  # partial edge
    assert lab[1, 2, 2] == -1 and lab[0, 0, 0] == -1  # neighbours of a lesion token
    assert lab[2, 3, 0] == 0 and lab[1, 3, 0] == 0  # lesion-free neighbourhoods
    assert set(np.unique(label)) == {-1, 0, 1}


def test_grouped_scores_keep_patients_apart_and_find_a_planted_signal():
    rng = np.random.default_rng(0)
    n, groups = 600, np.repeat(np.arange(30), 20)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 6))
    x[:, 0] += 1.5 * y
    s = lt.grouped_oof_scores(x, y, groups, n_folds=5, seed=1)
    assert np.isfinite(s).all() and roc_auc_score(y, s) > 0.8
    # a feature that only identifies the patient carries nothing across held-out patients
    x2 = np.eye(30)[groups] + 0.01 * rng.normal(size=(n, 30))
    y2 = (groups % 2).astype(int)
    s2 = lt.grouped_oof_scores(x2, y2, groups, n_folds=5, seed=1)
    assert roc_auc_score(y2, s2) < 0.75
    with pytest.raises(ValueError, match="too few"):
        lt.grouped_oof_scores(x[:40], y[:40], groups[:40], n_folds=5)


def test_patient_bootstrap_matches_a_naive_loop():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(12), 15)
    y = rng.integers(0, 2, len(groups))
    a, b = y + rng.normal(size=len(y)), rng.normal(size=len(y))
    got = lt.patient_bootstrap_auroc(y, {"random": b, "enc": a}, groups, n_boot=200, seed=5)
    r2 = np.random.default_rng(5)
    da, db = [], []
    for _ in range(200):
        idx = np.concatenate([np.where(groups == g)[0] for g in r2.integers(0, 12, 12)])
        if y[idx].min() == y[idx].max():
            continue
        da.append(roc_auc_score(y[idx], a[idx]))
        db.append(roc_auc_score(y[idx], b[idx]))
    assert got["enc"][0] == pytest.approx(roc_auc_score(y, a))
    assert got["enc"][1:] == pytest.approx(tuple(np.quantile(da, [0.025, 0.975])))
    assert got["enc-random"][1:] == pytest.approx(tuple(np.quantile(np.subtract(da, db), [0.025, 0.975])))


def test_token_selection_roundtrip_and_features_at(tmp_path):
    from neurovfm.features import store

    rng = np.random.default_rng(4)
    folder = tmp_path / "feat"
    folder.mkdir()
    stored = {}
    with store.ChunkWriter(folder, 0, 6, "fp") as w:
        for sid, win, n in (("s1", "brain", 9), ("s1", "blood", 9), ("s2", "mri", 5)):
            f = rng.normal(size=(n, 6)).astype(np.float16)
            c = np.stack([np.zeros(n), np.arange(n) // 3, np.arange(n) % 3], 1).astype(np.int16)
            w.add(
                {
                    "series_id": sid,
                    "study_id": sid,
                    "modality": "CT",
                    "sequence": "ct",
                    "window": win,
                    "grid": [1, 3, 3],
                },
                f,
                c,
            )
            stored[(sid, win)] = (f.astype(np.float32), c.astype(int))
    store.write_index(folder, {"split": "train", "encoder": "fake", "dim": 6}, [w.sidecar()])
    sel = [("s2", "mri", 4), ("s1", "brain", 2), ("s1", "brain", 7), ("s2", "mri", 0)]
    tokens = {
        "label": np.array([1, 0, 1, 0], np.int8),
        "tissue": np.array(["edema", "", "edema", ""], object),
        "modality": np.array(["MR", "CT", "CT", "MR"], object),
        "patient": np.array(["p2", "p1", "p1", "p2"], object),
        "series": np.array([s for s, _, _ in sel], object),
        "window": np.array([w_ for _, w_, _ in sel], object),
        "position": np.array([p for _, _, p in sel]),
        "coords": np.array([stored[(s, w_)][1][p] for s, w_, p in sel]),
    }
    lt.save_tokens(tmp_path / "sel.npz", tokens)
    back = lt.load_tokens(tmp_path / "sel.npz")
    assert back["tissue"].tolist() == ["edema", "", "edema", ""] and back["position"].tolist() == [4, 2, 7, 0]
    got = lt.features_at(back, [folder / "index.json"])
    for row, (s, w_, p) in enumerate(sel):
        assert np.array_equal(got[row], stored[(s, w_)][0][p])
    bad = dict(back, coords=back["coords"] + 1)
    with pytest.raises(ValueError, match="coordinates differ"):
        lt.features_at(bad, [folder / "index.json"])
    with pytest.raises(KeyError, match="not in these feature stores"):
        lt.features_at(dict(back, window=np.array(["bone"] * 4)), [folder / "index.json"])


def test_matched_controls_are_nearest_unused_and_take_intensity_away():
    """Each lesion gets the nearest free candidate (never one twice); the positive control: with matched controls
    a token's own mean no longer separates lesion from control, with random controls it does."""
    rng = np.random.default_rng(3)
    lesion = np.c_[rng.normal(2.0, 0.3, 40), rng.normal(0.5, 0.1, 40)]
    candidates = np.c_[rng.normal(0.0, 1.5, 600), rng.normal(0.5, 0.2, 600)]
    c, j = lt.match_controls(lesion, candidates, per_lesion=1, rng=np.random.default_rng(0))
    assert len(c) == 40 and len(set(c.tolist())) == 40 and sorted(j.tolist()) == list(range(40))
    # greedy without replacement, served in the function's order: replay it naively
    order = np.random.default_rng(0).permutation(40)
    scale = candidates.std(axis=0) + 1e-6
    free = np.ones(600, bool)
    for lesion_idx, cand in zip(j, c):
        d = (((candidates - lesion[lesion_idx]) / scale) ** 2).sum(1)
        d[~free] = np.inf
        assert cand == int(np.argmin(d))
        free[cand] = False
    assert j.tolist() == order.tolist()
    y = np.r_[np.ones(40), np.zeros(40)]
    matched_auc = roc_auc_score(y, np.r_[lesion[:, 0], candidates[c, 0]])
    random_auc = roc_auc_score(y, np.r_[lesion[:, 0], candidates[rng.choice(600, 40, replace=False), 0]])
    assert abs(matched_auc - 0.5) < 0.1 and random_auc > 0.85
    c2, j2 = lt.match_controls(lesion, candidates[:50], per_lesion=2, rng=np.random.default_rng(0))
    assert len(c2) == 50 and len(set(c2.tolist())) == 50  # candidates run out: every one used once
    assert lt.match_controls(lesion, candidates[:0], 1, np.random.default_rng(0))[0].size == 0


def test_mlp_probe_finds_what_a_linear_probe_cannot():
    """Positive control of the MLP probe: a label that is the XOR of two signs is invisible to a linear probe."""
    rng = np.random.default_rng(1)
    n, groups = 1200, np.repeat(np.arange(40), 30)
    x = rng.normal(size=(n, 4))
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(int)
    lin = roc_auc_score(y, lt.grouped_oof_scores(x, y, groups, seed=0, probe="linear"))
    mlp = roc_auc_score(y, lt.grouped_oof_scores(x, y, groups, seed=0, probe="mlp"))
    assert lin < 0.6 and mlp > 0.85
    with pytest.raises(ValueError, match="unknown probe"):
        lt.grouped_oof_scores(x, y, groups, probe="forest")


def test_token_selection_keeps_references_and_reads_old_files(tmp_path):
    n = 6
    tokens = {
        "label": np.array([1, 0, 1, 0, 1, 0], np.int8),
        "tissue": np.array(["edema", "", "csf", "", "edema", ""], object),
        "matched": np.array(["edema", "edema", "csf", "csf", "edema", "edema"], object),
        "modality": np.full(n, "CT", object),
        "patient": np.full(n, "p", object),
        "series": np.full(n, "s", object),
        "window": np.full(n, "brain", object),
        "position": np.arange(n),
        "coords": np.zeros((n, 3), int),
        "features": {
            "raw": np.linspace(0, 1, n * 4, dtype=np.float32).reshape(n, 4),
            "intensity": np.ones((n, 8), np.float32),
            "random": np.zeros((n, 2), np.float32),
        },
    }
    lt.save_tokens(tmp_path / "a.npz", tokens)
    back = lt.load_tokens(tmp_path / "a.npz")
    assert back["matched"].tolist() == tokens["matched"].tolist()
    assert set(back["references"]) == {"raw", "intensity"}  # encoder features are not stored
    assert np.allclose(back["references"]["raw"], tokens["features"]["raw"], atol=1e-3)
    old = {
        k: (np.asarray(v).astype(str) if np.asarray(v).dtype == object else v)
        for k, v in tokens.items()
        if k not in ("matched", "features")
    }
    np.savez(tmp_path / "old.npz", **old)
    back = lt.load_tokens(tmp_path / "old.npz")
    assert back["matched"].tolist() == ["edema", "", "csf", "", "edema", ""]
