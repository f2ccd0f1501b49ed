"""Anatomy-under-flips diagnostic: token positions against SimpleITK, orientation bookkeeping against the
pretraining augmentation, poses against the rebuilt patients, the grouped R^2 bootstrap against a naive loop, and
positive controls: a readout that holds the position scores high and one that does not scores near zero, and the
supervised control's loss falls."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from sklearn.metrics import r2_score

from neurovfm.analysis import anatomy_context as ac
from neurovfm.eval.bootstrap import bootstrap_indices
from neurovfm.jepa.augment import orient
from neurovfm.models.patch_embed import patchify

from shard_factory import toy_model_config

PATCH = (4, 16, 16)


def _rotation(deg):
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def test_token_centres_match_simpleitk():
    direction = _rotation(20) @ np.array([[0, 0, 1.0], [0, 1.0, 0], [-1.0, 0, 0]])  # columns: slice, row, col
    entry = {"shape": [16, 48, 64], "direction_lps": direction.tolist(), "origin_lps": [-30.0, 12.5, 80.0]}
    spacing = [4.0, 1.0, 1.0]
    pose = np.eye(4)
    pose[:3, :3] = _rotation(-7) * 1.05
    pose[:3, 3] = [3.0, -4.0, 9.0]
    native = ac.token_native_coords(entry, spacing, PATCH, pose)
    assert native.shape == (4, 3, 4, 3)
    img = sitk.Image(entry["shape"][::-1], sitk.sitkUInt8)
    img.SetSpacing(spacing[::-1])
    img.SetOrigin(entry["origin_lps"])
    img.SetDirection(direction[:, ::-1].flatten().tolist())
    for tok in [(0, 0, 0), (3, 2, 1), (1, 1, 3)]:
        centre = [t * p + (p - 1) / 2 for t, p in zip(tok, PATCH)]
        lps = np.array(img.TransformContinuousIndexToPhysicalPoint(centre[::-1]))
        want = (np.linalg.inv(pose) @ np.r_[lps, 1.0])[:3]
        np.testing.assert_allclose(native[tok], want, atol=1e-9)


@pytest.mark.parametrize(
    "flips, swap",
    [
        ((False, False, False), False),
        ((True, False, True), False),
        ((False, True, False), True),
        ((True, True, True), True),
    ],
)
def test_orient_grid_follows_the_augmentation(flips, swap):
    grid = (3, 4, 5)
    ids = np.arange(np.prod(grid), dtype=np.float32).reshape(grid)
    image = torch.from_numpy(np.kron(ids, np.ones(PATCH, np.float32)))[None]  # every voxel: its token id
    mask = torch.ones(grid, dtype=torch.bool)
    image, _ = orient(image, mask, flips, swap)
    patches, _ = patchify(image, PATCH)
    np.testing.assert_array_equal(patches[:, 0].numpy(), ac.orient_grid(ids, flips, swap).reshape(-1))


def test_poses_without_tissue_maps_equal_the_rebuilt_patients(demo_run):
    import json

    from neurovfm.analysis.synth_patients import iter_poses, rebuild_patients

    truth = [json.loads(p.read_text()) for p in sorted((demo_run["export"] / "truth").glob("*.json"))][:3]
    uids = [t["study_instance_uid"] for t in truth]
    poses = dict(iter_poses(demo_run["cfg"], uids))
    patients = rebuild_patients(demo_run["cfg"], uids)
    assert set(poses) == set(uids)
    for uid in uids:
        np.testing.assert_array_equal(poses[uid], patients[uid].native_to_lps)


def test_grouped_r2_against_sklearn_and_a_naive_loop():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(12), rng.integers(3, 9, 12)).astype(str).astype(object)
    y = rng.normal(size=(len(groups), 3))
    pred = y + rng.normal(scale=0.7, size=y.shape)
    point, reps = ac.grouped_r2(y, pred, groups, n_boot=20, seed=3)
    np.testing.assert_allclose(point, r2_score(y, pred, multioutput="raw_values"))
    names, inv = np.unique(groups, return_inverse=True)
    for r, draw in enumerate(bootstrap_indices(len(names), 20, 3)):
        rows = np.concatenate([np.flatnonzero(inv == g) for g in draw])
        np.testing.assert_allclose(reps[r], r2_score(y[rows], pred[rows], multioutput="raw_values"), atol=1e-10)


def _views(n_patients, per, rng, informative):
    target = rng.normal(size=(n_patients * per, 3)) * [10, 30, 25]
    feats = {
        "oracle": np.c_[target + rng.normal(scale=3.0, size=target.shape), rng.normal(size=(len(target), 5))],
        "random": rng.normal(size=(len(target), 8)),
    }
    return ac.Views(
        patches=rng.normal(size=(len(target), 16)).astype(np.float32),
        coords=rng.integers(0, 10, (len(target), 3)),
        target=target,
        group=np.repeat([f"{informative}{p}" for p in range(n_patients)], per).astype(object),
        modality=np.full(len(target), "MR", object),
        features=feats,
    )


def test_score_sees_a_readout_that_holds_the_position():
    """Positive control of the statistics: features that carry the target beat features that do not, with a
    paired interval excluding zero; the uninformative one sits near zero."""
    rng = np.random.default_rng(1)
    train, val = _views(20, 30, rng, "t"), _views(15, 30, rng, "v")
    scores = {
        name: ac.score(train.features[name], train, val.features[name], val, [0.1, 1, 10], 200, 0)
        for name in ("oracle", "random")
    }
    rows = {(r["encoder"], r["target"]): r for r in ac.summary_rows(scores, "random", 0.05)}
    assert rows[("oracle", "mean")]["r2"] > 0.8
    assert abs(rows[("random", "mean")]["r2"]) < 0.1
    assert rows[("oracle", "mean")]["diff_lo"] > 0.5
    assert "diff" not in rows[("random", "mean")]
    assert ac.baseline_features(val, "positions", 12).shape == (len(val.target), 12)
    assert ac.baseline_features(val, "intensity", 12).shape == (len(val.target), 8)


class _FakeReader:
    def __init__(self, volumes):
        self.volumes = volumes
        self.index = {"spacing_mm": [4.0, 1.0, 1.0], "patch": list(PATCH)}


class _FakeData:
    """Volumes of a head-like gradient: intensity rises towards +y of the native frame, so position is
    learnable from context; poses are identity with a shift."""

    def __init__(self, n=6):
        self.volumes = [
            {
                "shape": [16, 64, 64],
                "direction_lps": np.eye(3).tolist(),
                "origin_lps": [float(k), -20.0, -30.0],
                "study_id": f"s{k}",
                "series_id": f"v{k}",
                "modality": "MR",
            }
            for k in range(n)
        ]
        self.reader = _FakeReader(self.volumes)

    def __len__(self):
        return len(self.volumes)

    def __getitem__(self, i):
        z, y, x = np.meshgrid(np.arange(16), np.arange(64), np.arange(64), indexing="ij")
        image = (np.sin(x / 9.0) + y / 32.0 + 0.3 * z / 16.0).astype(np.float32)[None]
        return {"image": torch.from_numpy(image), "token_mask": torch.ones(4, 4, 4, dtype=torch.bool)}


def test_supervised_control_learns_positions():
    from neurovfm.analysis.anatomy_supervised import train_anatomy_encoder

    torch.set_num_threads(1)
    data = _FakeData()
    poses = {v["study_id"]: np.eye(4) for v in data.volumes}
    mcfg = toy_model_config(PATCH)
    enc, losses = train_anatomy_encoder(
        mcfg,
        data,
        list(range(len(data))),
        poses,
        steps=40,
        batch_size=2,
        lr=2e-3,
        weight_decay=0.0,
        max_crop=[4, 4, 4],
        flip_p=0.5,
        swap_p=0.5,
        seed=0,
    )
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert not enc.training
