"""Where in the head is this token? A context diagnostic that a random network cannot pass.

Every synthetic patient is the template head under a known pose, so each token of a preprocessed volume has an
exact anatomical position: its centre in the head's own frame (native mm: ``x`` left-right from the midline,
``y`` front-back, ``z`` foot-head). The diagnostic asks a frozen encoder's token features for that position:
``|x|`` (distance from the midline; left and right look alike), ``y`` and ``z``.

Why a random encoder fails it: at probe time every volume is shown under random flips of its three axes and a
random swap of its in-plane axes (as in pretraining), and token coordinates are those of the flipped grid. The
position code then says nothing about the sign of ``y`` or ``z``, and one token's voxels look alike at mirrored
places of a nearly symmetric head. What tells front from back or top from bottom is context: the face, the
skull base, the neck, the shape of the head around the token. An encoder that mixes in context can read it; a
network whose output is its token's own content plus a position code cannot (on the demo, random weights score
what the position code alone scores; ``benchmarks/RESULTS.md``).

References scored on the same tokens: ``positions`` (the flipped grid's sine-cosine code alone: what position
tells), ``intensity`` (hand-crafted statistics of the token's own voxels: mean, standard deviation,
percentiles) and ``raw`` (the token's voxels). Ridge readouts are fitted on the train split's tokens and scored
on the validation split's (patients never cross); R^2 per target and their mean, with 95% intervals from
resampling validation patients, and each encoder's paired difference from the ``reference`` encoder (random
weights) on the same resamples.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from neurovfm.analysis import anatomy_regions as ar
from neurovfm.eval.bootstrap import bootstrap_indices, percentile_ci
from neurovfm.jepa.augment import draw_orientation, orient
from neurovfm.models.patch_embed import patchify
from neurovfm.models.pos_embed import sincos_3d

log = logging.getLogger("neurovfm")

TARGETS = ("abs_x", "y", "z")
BASELINES = ("positions", "intensity", "raw")


@dataclass
class Views:
    """Sampled tokens of oriented views: the probe's inputs and targets."""

    patches: np.ndarray  # [n, P] float32 voxels of each token (normalised as in pretraining)
    coords: np.ndarray  # [n, 3] int, coordinates in the oriented grid
    target: np.ndarray  # [n, 3] float, native mm (|x|, y, z) of the token centre
    group: np.ndarray  # [n] object, the patient (study) of each token
    modality: np.ndarray  # [n] object
    features: dict  # encoder name -> [n, D] float32 frozen features of the tokens


def token_native_coords(entry: dict, spacing, patch, native_to_lps: np.ndarray) -> np.ndarray:
    """[nz, ny, nx, 3] native mm (x, y, z) of each token centre of a preprocessed volume."""
    grid = [int(n) // int(p) for n, p in zip(entry["shape"], patch)]
    idx = np.stack(np.meshgrid(*[np.arange(g) for g in grid], indexing="ij"), -1).reshape(-1, 3).astype(float)
    centre = idx * np.asarray(patch, float) + (np.asarray(patch, float) - 1.0) / 2.0
    lps = ar.voxel_to_lps(entry, spacing) @ np.c_[centre, np.ones(len(centre))].T
    native = np.linalg.inv(native_to_lps) @ lps
    return native[:3].T.reshape(*grid, 3)


def orient_grid(values: np.ndarray, flips, swap: bool) -> np.ndarray:
    """Apply :func:`neurovfm.jepa.augment.orient`'s flips and in-plane swap to a per-token array [z, y, x, ...]."""
    for axis, f in enumerate(flips):
        if f:
            values = np.flip(values, axis)
    if swap:
        values = np.swapaxes(values, 1, 2)
    return np.ascontiguousarray(values)


@torch.no_grad()
def collect_views(
    dataset,
    positions: list[int],
    poses: dict,
    encoders: dict,
    patch,
    n_views: int,
    tokens_per_view: int,
    flip_p: float,
    swap_p: float,
    seed: int,
    device: str = "cpu",
    progress=None,
) -> tuple[Views, list[dict]]:
    """Oriented views of the volumes at ``positions`` of ``dataset`` (one channel each: the MRI, or the CT
    window the dataset was opened with), each encoded whole (all its foreground tokens are the context) by every
    encoder of ``encoders`` (name -> frozen module); up to ``tokens_per_view`` foreground tokens of each view are
    kept. ``poses``: study id -> native -> LPS 4 x 4. Returns the views and the volumes left out with the reason.
    The same tokens and orientations for every encoder (seeded by volume and view)."""
    from neurovfm.features.extract import encode_pack

    spacing = dataset.reader.index["spacing_mm"]
    dev = torch.device(device)
    parts, skipped = [], []
    feats = {name: [] for name in encoders}
    for i in positions:
        entry = dataset.volumes[i]
        pose = poses.get(entry["study_id"])
        if pose is None:
            skipped.append({"series_id": entry["series_id"], "reason": "no_ground_truth_pose"})
            continue
        item = dataset[i]
        native = token_native_coords(entry, spacing, patch, pose)
        for v in range(n_views):
            rng = np.random.default_rng([seed, i, v])
            flips, swap = draw_orientation(rng, flip_p, swap_p)
            image, mask = orient(item["image"][:1], item["token_mask"].bool(), flips, swap)
            nat = orient_grid(native, flips, swap).reshape(-1, 3)
            patches, coords = patchify(image, patch)
            keep = np.flatnonzero(mask.reshape(-1).numpy())
            if keep.size < 2:
                skipped.append({"series_id": entry["series_id"], "reason": "fewer_than_two_foreground_tokens"})
                break
            pick = np.sort(rng.choice(keep.size, size=min(tokens_per_view, keep.size), replace=False))
            whole = {"patches": patches[keep], "coords": coords[keep]}
            for name, enc in encoders.items():
                feats[name].append(encode_pack(enc, [whole], dev)[0].numpy()[pick])
            rows = keep[pick]
            parts.append((patches[rows].numpy(), coords[rows].numpy(), nat[rows], entry))
        if progress is not None:
            progress.update()
    if not parts:
        raise ValueError("no volume could be sampled: " + ", ".join(sorted({s["reason"] for s in skipped})))
    views = Views(
        patches=np.concatenate([p[0] for p in parts]).astype(np.float32),
        coords=np.concatenate([p[1] for p in parts]).astype(int),
        target=np.concatenate([np.c_[np.abs(p[2][:, 0]), p[2][:, 1], p[2][:, 2]] for p in parts]),
        group=np.concatenate([np.full(len(p[0]), p[3]["study_id"], object) for p in parts]),
        modality=np.concatenate([np.full(len(p[0]), p[3]["modality"], object) for p in parts]),
        features={name: np.concatenate(f).astype(np.float32) for name, f in feats.items()},
    )
    return views, skipped


def intensity_statistics(patches: np.ndarray) -> np.ndarray:
    """[n, 8] hand-crafted statistics of each token's voxels [n, P]: mean, standard deviation, the 5/25/50/75/95th
    percentiles and the fraction of voxels above the token's mean."""
    p = np.asarray(patches, np.float32)
    q = np.percentile(p, [5, 25, 50, 75, 95], axis=1).T
    return np.c_[p.mean(1), p.std(1), q, (p > p.mean(1, keepdims=True)).mean(1)].astype(np.float32)


def baseline_features(views: Views, name: str, pos_dim: int) -> np.ndarray:
    """Reference inputs: the position code, the token's intensity statistics, or its voxels."""
    if name == "positions":
        return sincos_3d(torch.as_tensor(views.coords), pos_dim).numpy()
    if name == "intensity":
        return intensity_statistics(views.patches)
    if name == "raw":
        return views.patches
    raise ValueError(f"unknown baseline {name!r}; choose one of {BASELINES}")


def ridge_predictions(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, alphas) -> np.ndarray:
    """Standardised inputs, ridge with the penalty chosen by efficient leave-one-out on the training tokens."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), RidgeCV(alphas=list(alphas)))
    model.fit(x_train, y_train)
    return model.predict(x_test)


def grouped_r2(
    y: np.ndarray, pred: np.ndarray, groups: np.ndarray, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """R^2 per target [T] on all tokens, and its replicates [n_boot, T] when whole patients are resampled.

    Per patient the sums n, sum y, sum y^2 and the residual sum of squares are kept, so each replicate is a
    weighted sum (the same draws as a naive loop over ``eval.bootstrap_indices``)."""
    _, inv = np.unique(groups, return_inverse=True)
    n_groups = int(inv.max()) + 1
    y, res = np.asarray(y, float), (np.asarray(y, float) - np.asarray(pred, float)) ** 2
    count = np.bincount(inv, minlength=n_groups).astype(float)
    s1 = np.stack([np.bincount(inv, y[:, t], n_groups) for t in range(y.shape[1])], 1)
    s2 = np.stack([np.bincount(inv, y[:, t] ** 2, n_groups) for t in range(y.shape[1])], 1)
    rss = np.stack([np.bincount(inv, res[:, t], n_groups) for t in range(y.shape[1])], 1)

    def r2(w):
        n = w @ count
        tss = w @ s2 - (w @ s1) ** 2 / n[..., None]
        return 1.0 - (w @ rss) / tss

    weights = np.stack([np.bincount(d, minlength=n_groups) for d in bootstrap_indices(n_groups, n_boot, seed)])
    return r2(np.ones(n_groups)), r2(weights.astype(float))


def score(train_x: np.ndarray, train: Views, test_x: np.ndarray, test: Views, alphas, n_boot: int, seed: int) -> dict:
    """Per modality: (point R^2 [T], replicates [n_boot, T]) of a ridge readout trained on train tokens."""
    out = {}
    for mod in sorted(set(test.modality)):
        tr, te = train.modality == mod, test.modality == mod
        if not tr.any() or not te.any():
            continue
        mean, std = train.target[tr].mean(0), train.target[tr].std(0)
        pred = ridge_predictions(train_x[tr], (train.target[tr] - mean) / std, test_x[te], alphas) * std + mean
        out[mod] = grouped_r2(test.target[te], pred, test.group[te], n_boot, seed)
    return out


def summary_rows(scores: dict, reference: str, alpha: float) -> list[dict]:
    """Rows (encoder, modality, target, r2, lo, hi, diff, diff_lo, diff_hi, n_patients) with paired differences
    from ``reference`` on the same patient resamples; ``target`` "mean" averages the three targets."""
    rows = []
    for name, per_mod in scores.items():
        for mod, (point, reps) in per_mod.items():
            ref = scores.get(reference, {}).get(mod)
            for t, label in enumerate((*TARGETS, "mean")):
                pick = (lambda a: a[..., t]) if label != "mean" else (lambda a: a.mean(-1))
                lo, hi = percentile_ci(pick(reps)[:, None], alpha)
                row = {
                    "encoder": name,
                    "modality": mod,
                    "target": label,
                    "r2": float(pick(point)),
                    "lo": float(lo[0]),
                    "hi": float(hi[0]),
                }
                if ref is not None and name != reference:
                    d = pick(reps) - pick(ref[1])
                    dlo, dhi = percentile_ci(d[:, None], alpha)
                    row.update(diff=float(pick(point) - pick(ref[0])), diff_lo=float(dlo[0]), diff_hi=float(dhi[0]))
                rows.append(row)
    return rows
