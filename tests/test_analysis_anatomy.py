"""Anatomy analysis: region codes against the point-wise lobe function, voxel -> template mapping against a direct
computation for a known point, token majority and IoU against hand counts, nearest-neighbour matching against a
brute-force loop, sliding-window votes against a loop, deterministic patient rebuild against the truth files."""

import numpy as np
import pytest

from neurovfm.analysis import anatomy_regions as ar
from neurovfm.analysis.kmeans_brain import best_cluster, dense_clusters, iou, vote_map, window_offsets
from neurovfm.analysis.patch_matching import match_pair, nearest_neighbours, plan_pairs
from neurovfm.synth.anatomy import lobe_of


def test_lobe_codes_match_pointwise_lobe_of():
    rng = np.random.default_rng(0)
    pts = rng.uniform([-70, -100, -70], [70, 110, 80], size=(3000, 3))
    codes = ar.lobe_codes(pts[:, 0], pts[:, 1], pts[:, 2])
    expect = [ar.LOBE_NAMES[lobe_of(p)] for p in pts]
    assert codes.tolist() == expect


class _Anat:
    """A stand-in template grid: index (z, y, x) -> native (x, y, z) mm as the real anatomy's convention."""

    origin_mni = np.array([-20.0, -30.0, -10.0])

    @property
    def index_to_native(self):
        a = np.diag([-1.0, -1.0, 1.0, 1.0])
        a[:3, 3] = self.origin_mni * np.array([-1.0, -1.0, 1.0])
        return a


def test_volume_to_template_maps_a_known_point():
    anat = _Anat()
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    pose = np.eye(4)
    pose[:3, :3] = 1.05 * rot
    pose[:3, 3] = [3.0, -2.0, 5.0]
    entry = {"direction_lps": np.eye(3)[:, [2, 1, 0]].tolist(), "origin_lps": [-10.0, -12.0, -8.0]}
    spacing = [4.0, 1.0, 1.0]
    a = ar.volume_to_template(entry, spacing, pose, anat)
    s, r, c = 3, 7, 11
    lps = np.array([-10.0, -12.0, -8.0]) + np.eye(3)[:, [2, 1, 0]] @ (np.array(spacing) * [s, r, c])
    native = np.linalg.solve(pose[:3, :3], lps - pose[:3, 3])
    x_mni, y_mni, z_mni = -native[0], -native[1], native[2]
    expect_zyx = [z_mni - anat.origin_mni[2], y_mni - anat.origin_mni[1], x_mni - anat.origin_mni[0]]
    assert np.allclose((a @ [s, r, c, 1.0])[:3], expect_zyx)
    # sampling a label map at that voxel reads the template label at the mapped index
    tmpl = np.zeros((80, 80, 80), np.int8)
    idx = np.round(expect_zyx).astype(int)
    tmpl[tuple(idx)] = 5
    vol = ar.sample(tmpl, a, (8, 16, 16))
    if np.allclose(expect_zyx, idx, atol=0.49):
        assert vol[s, r, c] == 5


def test_token_majority_against_hand_count():
    lab = np.zeros((4, 16, 32), np.int8)
    lab[:, :10, :16] = 3  # 4*10*16 = 640 of 1024 voxels in token (0, 0, 0)
    lab[:, :, 16:20] = 2  # 4*16*4 = 256 of token (0, 0, 1); the rest 0
    tok = ar.token_majority(lab, (4, 16, 16))
    assert tok.shape == (1, 1, 2) and tok[0, 0, 0] == 3 and tok[0, 0, 1] == 0


def test_tissue_mask_sums_channels():
    frac = np.zeros((8, 2, 2, 2), np.uint8)
    frac[1, 0, 0, 0] = 100  # gm
    frac[2, 0, 0, 0] = 40  # wm: 140 >= 127.5
    frac[0, 1, 1, 1] = 120  # csf only: 120 < 127.5
    m = ar.tissue_mask(frac, ["gm", "wm", "csf"], 0.5)
    assert m[0, 0, 0] and not m[1, 1, 1] and m.sum() == 1


def test_nearest_neighbours_and_matching_against_loop():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(40, 8)), rng.normal(size=(55, 8))
    ra, rb = rng.integers(0, 4, 40), rng.integers(0, 4, 55)
    nn = nearest_neighbours(a, b, chunk=7)
    for i in range(40):
        sims = [a[i] @ b[j] / np.linalg.norm(a[i]) / np.linalg.norm(b[j]) for j in range(55)]
        assert nn[i] == int(np.argmax(sims))
    m = match_pair(a, ra, b, rb, 4)
    q = np.flatnonzero(ra > 0)
    hits = sum(int(rb[nn[i]] == ra[i]) for i in q)
    assert m["queries"].sum() == len(q) and m["matches"].sum() == hits
    chance = sum(np.mean(rb == ra[i]) for i in q)
    assert m["chance"] == pytest.approx(chance)


def test_pairs_differ_in_patient_and_acquisition():
    meta = [
        {"patient_id": p, "modality": m, "sequence": s, "orientation": o}
        for p, m, s, o in [
            ("p1", "MR", "t1", "axial"),
            ("p1", "MR", "t2", "axial"),
            ("p2", "MR", "t1", "axial"),
            ("p3", "CT", "ct", "axial"),
            ("p4", "MR", "t1", "sagittal"),
        ]
    ]
    pairs = plan_pairs(meta, 100, 0)
    assert pairs and all(meta[i]["patient_id"] != meta[j]["patient_id"] for i, j in pairs)
    assert (0, 2) not in pairs and (0, 3) in pairs and (0, 4) in pairs
    assert len(plan_pairs(meta, 3, 0)) == 3


def test_votes_and_iou_against_loops():
    patch = (2, 4, 4)
    assert window_offsets(patch, (1, 2, 2))[0] == (0, 0, 0) and len(window_offsets(patch, (1, 2, 2))) == 8
    shape = (4, 8, 8)
    windows = [
        ((0, 0, 0), np.array([[0, 0, 0], [1, 1, 1]]), np.array([0, 1])),
        ((1, 2, 2), np.array([[0, 0, 0]]), np.array([1])),
        ((0, 2, 2), np.array([[0, 0, 0]]), np.array([1])),
    ]
    got = vote_map(shape, windows, patch, 2)
    votes = np.zeros((2, *shape), int)
    for off, coords, cl in windows:
        for (s, r, c), k in zip(coords, cl):
            for z in range(s * 2 + off[0], s * 2 + off[0] + 2):
                for y in range(r * 4 + off[1], r * 4 + off[1] + 4):
                    for x in range(c * 4 + off[2], c * 4 + off[2] + 4):
                        votes[k, z, y, x] += 1
    expect = np.where(votes.sum(0) == 0, -1, votes.argmax(0))
    assert np.array_equal(got, expect)
    brain = np.zeros(shape, bool)
    brain[2:, 4:, 4:] = True
    inter = sum(1 for idx in np.ndindex(shape) if got[idx] == 1 and brain[idx])
    union = sum(1 for idx in np.ndindex(shape) if got[idx] == 1 or brain[idx])
    assert iou(got == 1, brain) == pytest.approx(inter / union)
    best, ious = best_cluster(got, brain, 2)
    assert best == int(np.argmax(ious)) and ious[1] == pytest.approx(inter / union)


def test_dense_clusters_recover_a_planted_block():
    """An encoder that reports each token's mean intensity: k-means with k 2 separates a bright block."""
    img = np.zeros((8, 32, 32), np.float32)
    img[:, :16, :16] = 5.0
    fg = np.ones_like(img, bool)

    def encode(patches, coords):
        return np.stack([patches.mean(axis=1), np.zeros(len(patches))], axis=1)

    cmap = dense_clusters(encode, img, fg, (4, 16, 16), (4, 8, 8), 2, 1.0, 2, 0)
    best, ious = best_cluster(cmap, img > 0, 2)
    assert ious[best] > 0.5 and (cmap >= 0).all()


def test_rebuilt_patients_reproduce_truth(demo_run):
    """The deterministic rebuild reproduces the recorded findings of a small synthetic run."""
    import json

    from neurovfm.analysis.synth_patients import rebuild_patients

    truth = [json.loads(p.read_text()) for p in sorted((demo_run["export"] / "truth").glob("*.json"))]
    with_findings = [t for t in truth if t["findings"]][:2]
    uids = {t["study_instance_uid"] for t in with_findings}
    patients = rebuild_patients(demo_run["cfg"], uids, {t["study_instance_uid"]: t for t in with_findings})
    assert set(patients) == uids
    for t in with_findings:
        got = np.asarray([f["center_lps"] for f in patients[t["study_instance_uid"]].findings])
        assert np.allclose(got, [f["center_lps"] for f in t["findings"]], atol=0.11)


def test_reference_maps_round_trip_by_series(tmp_path):
    """The maps the anatomy_reference job saves load back for the same volumes, by series id whatever their
    positions; a volume it lacks or another patch size makes the analysis build them itself (None)."""
    from types import SimpleNamespace

    from neurovfm.analysis.anatomy_run import VolumeAnatomy

    rng = np.random.default_rng(0)
    vols = [{"series_id": f"s{k}"} for k in range(4)]
    reader = SimpleNamespace(volumes=vols, index={"spacing_mm": [1.0, 1.0, 4.0], "patch": [4, 16, 16]})
    va = VolumeAnatomy.__new__(VolumeAnatomy)
    va.reader, va.patch = reader, (4, 16, 16)
    va.tokens = {i: rng.integers(0, 9, (2, 3, 4)).astype(np.int8) for i in (1, 3)}
    va.brain = {i: rng.random((8, 48, 64)) > 0.5 for i in (1, 3)}
    path = tmp_path / "reference.npz"
    va.save(path)
    moved = SimpleNamespace(volumes=[vols[3], vols[0], vols[1]], index=reader.index)  # other positions
    back = VolumeAnatomy.load(path, moved, [0, 2])
    np.testing.assert_array_equal(back.tokens[0], va.tokens[3])
    np.testing.assert_array_equal(back.brain[2], va.brain[1])
    assert back.brain[2].dtype == bool
    assert VolumeAnatomy.load(path, moved, [0, 1]) is None  # s0 is not in the file
    other_patch = SimpleNamespace(volumes=vols, index={**reader.index, "patch": [4, 8, 8]})
    assert VolumeAnatomy.load(path, other_patch, [1]) is None
