"""Laterality engine: the flip axis against nibabel and our own geometry (oblique and reversed volumes), the
selection of studies against a naive loop, the AUROCs against scikit-learn."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.spatial.transform import Rotation
from sklearn.metrics import roc_auc_score

from neurovfm.analysis.laterality import (
    FlippedVolumes,
    eligible_studies,
    flip_item,
    laterality_aurocs,
    lr_axis,
    side_targets,
)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
# canonical frames, columns = LPS directions of (slice, row, col): axial, coronal, sagittal
BASES = {
    "axial": np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], float).T,
    "coronal": np.array([[0, 1, 0], [0, 0, -1], [1, 0, 0]], float).T,
    "sagittal": np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float).T,
}


def _frames():
    rng = np.random.default_rng(0)
    for name, base in BASES.items():
        for k in range(4):
            rot = Rotation.from_rotvec(rng.normal(size=3) * np.deg2rad(12)).as_matrix()  # oblique, < 35 deg
            d = rot @ base
            if k % 2:
                d[:, k % 3] *= -1  # a reversed axis
            yield f"{name}{k}", d


@pytest.mark.parametrize("name,direction", list(_frames()))
def test_flip_axis_is_nibabels_left_right_axis(name, direction):
    affine = np.eye(4)
    affine[:3, :3] = LPS_TO_RAS @ direction * 1.5  # RAS affine of the (slice, row, col) array
    codes = nib.aff2axcodes(affine)
    assert lr_axis(direction) == [c in ("L", "R") for c in codes].index(True)


def _volume(direction, shape=(8, 16, 16), spacing=2.0):
    """A volume centred on the world origin with a blob on the patient's left (LPS x > 6 mm)."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    centre = (np.asarray(shape) - 1) / 2
    world = (idx - centre) * spacing @ direction.T  # LPS of every voxel
    image = (world[..., 0] > 6).astype(np.float32)[None]
    return world, {"image": torch.from_numpy(image), "token_mask": torch.ones(2, 4, 4, dtype=torch.bool)}


@pytest.mark.parametrize("name,direction", list(_frames()))
def test_flip_moves_a_left_finding_to_the_right(name, direction):
    world, item = _volume(direction)
    flipped = flip_item(item, lr_axis(direction))["image"][0].numpy().astype(bool)
    before = item["image"][0].numpy().astype(bool)
    assert world[before, 0].min() > 0
    # mirrored across the array axis nearest L-R: on the right (LPS -x), up to the obliquity's shear
    assert world[flipped, 0].mean() < -0.5 * world[before, 0].mean()
    assert (world[flipped, 0] < 0).mean() > 0.9
    assert flipped.sum() == before.sum()


def test_flipped_dataset_flips_image_and_token_mask_together():
    d = BASES["sagittal"]  # slice axis is L-R

    class Toy:
        volumes = [{"direction_lps": d.tolist()}]

        def __len__(self):
            return 1

        def __getitem__(self, i):
            img = torch.arange(2 * 8 * 4 * 4, dtype=torch.float32).reshape(2, 8, 4, 4)
            mask = torch.zeros(4, 2, 2, dtype=torch.bool)
            mask[0] = True
            return {"image": img, "token_mask": mask, "channels": ["a", "b"]}

    out = FlippedVolumes(Toy())[0]
    src = Toy()[0]
    assert torch.equal(out["image"], src["image"].flip(1))
    assert out["token_mask"][3].all() and not out["token_mask"][0].any()


def test_aurocs_match_sklearn():
    rng = np.random.default_rng(1)
    side = np.where(rng.random(40) < 0.5, "left", "right")
    dl, dr = rng.normal(size=40) - (side == "left"), rng.normal(size=40) + (side == "left")
    got = laterality_aurocs(dl, dr, side)
    y = side == "left"
    assert got["auroc_left"] == pytest.approx(roc_auc_score(y, -dl))
    assert got["auroc_right"] == pytest.approx(roc_auc_score(y, dr))
    assert got["auroc_combined"] == pytest.approx(roc_auc_score(y, dr - dl))
    assert np.isnan(laterality_aurocs(dl[:3], dr[:3], ["left"] * 3)["auroc_left"])


def test_side_targets_and_eligible_studies_against_a_naive_loop():
    names = ["a", "b", "c"]
    lateral = {
        "s0": {"a": "left"},
        "s1": {"a": "right", "b": "right"},
        "s2": {"a": "left", "b": "right"},
        "s3": {"c": "bilateral"},
        "s4": {"a": "left"},
        "s5": {"b": "left"},
    }
    rows = []
    for i in range(7):
        sid = f"s{i}"
        lab = {n: int(n in lateral.get(sid, {})) for n in names}
        prob = {"a": 0.9, "b": 0.9 if sid != "s5" else 0.1, "c": 0.9}
        if sid == "s4":
            lab["a"] = 0  # the report's side but a negative label: ignored
        rows.append({"study_id": sid, **{f"label:{n}": lab[n] for n in names}, **{f"prob:{n}": prob[n] for n in names}})
    thr = [0.5, 0.5, 0.5]
    got = eligible_studies(pd.DataFrame(rows), names, thr, lateral).set_index("study_id")
    expected = {
        "s0": ("left", ""),
        "s1": ("right", ""),
        "s2": ("", "conflicting_sides"),
        "s3": ("", "bilateral"),
        "s5": ("", "not_detected"),
    }
    assert set(got.index) == set(expected)
    for sid, (side, reason) in expected.items():
        assert (got.loc[sid, "side"], got.loc[sid, "reason"]) == (side, reason)
    # restricted to diagnosis b: s2 becomes a clean right-sided study
    only_b = eligible_studies(pd.DataFrame(rows), names, thr, lateral, diagnoses=["b"]).set_index("study_id")
    assert only_b.loc["s2", "side"] == "right" and only_b.loc["s2", "reason"] == ""
    y = side_targets(lateral, ["s0", "s1", "s3", "s9"])
    np.testing.assert_array_equal(y, [[1, 0], [0, 1], [1, 1], [0, 0]])
