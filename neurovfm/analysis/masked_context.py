"""What do the surroundings of a hidden token tell? Context diagnostics with the token taken out of the input.

For a centre token of a volume, the cube of tokens within Chebyshev distance ``inner`` of it is removed from the
encoder's input (the packed sequence simply leaves them out, as pretraining's context does), the rest of the
volume is encoded, and the features of the shell around the hole (distance ``inner`` < d <= ``outer``) are
averaged. Two readouts of that shell vector, both about something the encoder never saw:

* **content**: the hidden centre token's own intensity statistics (mean, sd, percentiles), a masked-token
  prediction in pixel-statistic space, R^2;
* **lesion**: whether a lesion fills the hidden centre, on the lesion check's tokens (lesion tokens and their
  intensity-matched controls, :mod:`neurovfm.analysis.lesion_tokens`), AUROC. It also tells whether the
  health system's findings are visible from their surroundings at all (edema, mass effect, a displaced
  ventricle), the property a JEPA target needs.

References on the same centres: ``positions`` (the centre's sine-cosine position code), ``shell_intensity`` (the
shell tokens' own intensity statistics, averaged: what the surroundings' voxels tell without any encoder). A
random network's shell features are about its tokens' contents plus position, so it should sit near
``shell_intensity``; an encoder that learned how anatomy and findings fit together can do better. Several
centres of one volume whose holes and shells do not overlap share one packed forward pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from neurovfm.analysis.anatomy_context import intensity_statistics
from neurovfm.models.patch_embed import patchify
from neurovfm.models.pos_embed import sincos_3d

log = logging.getLogger("neurovfm")
REFERENCES = ("positions", "shell_intensity")


def chebyshev(coords: np.ndarray, centre) -> np.ndarray:
    return np.abs(np.asarray(coords, int) - np.asarray(centre, int)).max(axis=1)


def series_key(volume: dict, window: str) -> tuple[str, str]:
    """(series, window) of a shard volume as token selections key it: MR volumes read ``mri``, CT the window the
    dataset was opened with."""
    return volume["series_id"], "mri" if volume["modality"] == "MR" else window


def keyed_volumes(dataset, keys, window: str) -> list[int]:
    """Positions of the dataset's volumes whose :func:`series_key` is among ``keys``."""
    return [i for i, v in enumerate(dataset.volumes) if series_key(v, window) in keys]


def foreground_tokens(item: dict, patch) -> tuple[torch.Tensor, np.ndarray, dict]:
    """(patches [n, P], integer coordinates [n, 3], coordinate tuple -> row) of a dataset item's foreground tokens
    (its first channel)."""
    patches, coords = patchify(item["image"][:1], patch)
    fg = item["token_mask"].reshape(-1).numpy().astype(bool)
    patches, coords = patches[fg], coords[fg].numpy()
    return patches, coords, {tuple(c): k for k, c in enumerate(coords.tolist())}


def hole_groups(centres: np.ndarray, inner: int, outer: int, max_group: int = 8) -> list[list[int]]:
    """Greedy groups of centre indices whose holes stay out of each other's shells (pairwise Chebyshev distance
    above ``inner + outer``), at most ``max_group`` per group, in the given order."""
    groups: list[list[int]] = []
    for k, c in enumerate(np.asarray(centres, int)):
        for g in groups:
            if len(g) < max_group and all(np.abs(c - centres[j]).max() > inner + outer for j in g):
                g.append(k)
                break
        else:
            groups.append([k])
    return groups


def group_inputs(coords: np.ndarray, centres: np.ndarray, group: list[int], inner: int, outer: int):
    """(kept token indices [n'], per centre of the group the positions in the kept list of its shell tokens)."""
    hidden = np.zeros(len(coords), bool)
    for j in group:
        hidden |= chebyshev(coords, centres[j]) <= inner
    kept = np.flatnonzero(~hidden)
    shells = [np.flatnonzero(chebyshev(coords[kept], centres[j]) <= outer) for j in group]
    return kept, shells


@dataclass
class Centres:
    """Sampled centres and what the diagnostics read from them."""

    label: np.ndarray  # [n] int8 1 lesion, 0 matched control
    content: np.ndarray  # [n, 8] intensity statistics of the hidden centre token
    coords: np.ndarray  # [n, 3]
    group: np.ndarray  # [n] object: patient
    modality: np.ndarray  # [n] object
    split: np.ndarray  # [n] object
    features: dict  # name -> [n, D] shell means (encoders and references)


@torch.no_grad()
def collect(
    datasets: dict,
    centres_of: dict,
    encoders: dict,
    patch,
    inner: int = 1,
    outer: int = 2,
    max_centres: int = 16,
    max_volumes: dict | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress=None,
) -> tuple[Centres, list[dict]]:
    """Shell features of hidden centres for every encoder (frozen modules) and reference.

    ``datasets``: split -> :class:`~neurovfm.store.dataset.VolumeDataset` (CT opened in one window);
    ``centres_of``: (series, window) -> (coords [m, 3], labels [m], patient); up to ``max_centres`` per volume
    (half lesion, half control where possible, seeded); ``max_volumes``: split -> cap on volumes (seeded choice).
    Returns the centres and the volumes left out with the reason."""
    from neurovfm.features.extract import encode_pack

    dev = torch.device(device)
    rows, feats, skipped = [], {n: [] for n in (*encoders, *REFERENCES)}, []
    for split, ds in datasets.items():
        todo = keyed_volumes(ds, centres_of, ds.ct_channels[0])
        cap = (max_volumes or {}).get(split)
        if cap is not None and len(todo) > cap:
            todo = sorted(np.random.default_rng([seed, len(todo)]).choice(todo, cap, replace=False).tolist())
        for i in todo:
            v = ds.volumes[i]
            c_all, lab_all, patient = centres_of[series_key(v, ds.ct_channels[0])]
            rng = np.random.default_rng([seed, i])
            pick = np.concatenate(
                [rng.permutation(np.flatnonzero(lab_all == lab))[: max_centres // 2] for lab in (1, 0)]
            )
            patches, coords, where = foreground_tokens(ds[i], patch)
            found = [(where[tuple(c)], lab_all[p]) for p, c in zip(pick, c_all[pick].tolist()) if tuple(c) in where]
            if not found:
                skipped.append({"series_id": v["series_id"], "reason": "no_centre_among_foreground_tokens"})
                continue
            centre_idx = np.asarray([f[0] for f in found])
            centres = coords[centre_idx]
            stats = intensity_statistics(patches.numpy())
            groups = hole_groups(centres, inner, outer)
            items, shells_of = [], []
            for g in groups:
                kept, shells = group_inputs(coords, centres, g, inner, outer)
                items.append({"patches": patches[kept], "coords": torch.as_tensor(coords[kept])})
                shells_of.append((g, kept, shells))
            out = {name: encode_pack(enc, items, dev) for name, enc in encoders.items()}
            per = {}
            for name in encoders:
                per[name] = np.zeros((len(centres), out[name][0].shape[1]), np.float32)
            per["shell_intensity"] = np.zeros((len(centres), stats.shape[1]), np.float32)
            ok = np.ones(len(centres), bool)
            for k, (g, kept, shells) in enumerate(shells_of):
                for j, sh in zip(g, shells):
                    if sh.size == 0:
                        ok[j] = False
                        continue
                    for name in encoders:
                        per[name][j] = out[name][k].numpy()[sh].mean(0)
                    per["shell_intensity"][j] = stats[kept[sh]].mean(0)
            per["positions"] = sincos_3d(torch.as_tensor(centres), 48).numpy()
            if not ok.any():
                skipped.append({"series_id": v["series_id"], "reason": "no_shell_tokens"})
                continue
            for name in feats:
                feats[name].append(per[name][ok])
            rows.append(
                (
                    np.asarray([f[1] for f in found], np.int8)[ok],
                    stats[centre_idx][ok],
                    centres[ok],
                    patient,
                    v["modality"],
                    split,
                )
            )
            if progress is not None:
                progress.update()
    if not rows:
        raise ValueError("no volume gave a centre: " + ", ".join(sorted({s["reason"] for s in skipped})))
    n = [len(r[0]) for r in rows]
    return (
        Centres(
            label=np.concatenate([r[0] for r in rows]),
            content=np.concatenate([r[1] for r in rows]),
            coords=np.concatenate([r[2] for r in rows]),
            group=np.concatenate([np.full(k, r[3], object) for k, r in zip(n, rows)]),
            modality=np.concatenate([np.full(k, r[4], object) for k, r in zip(n, rows)]),
            split=np.concatenate([np.full(k, r[5], object) for k, r in zip(n, rows)]),
            features={name: np.concatenate(f).astype(np.float32) for name, f in feats.items()},
        ),
        skipped,
    )


def grouped_oof_ridge(x: np.ndarray, y: np.ndarray, groups: np.ndarray, n_folds: int = 5, seed: int = 0, alphas=None):
    """Out-of-fold ridge predictions [n, T] (standardised inputs and targets, penalty by leave-one-out within
    the fold); folds keep each group (patient) on one side."""
    from sklearn.model_selection import GroupKFold

    from neurovfm.analysis.anatomy_context import ridge_predictions

    alphas = alphas or (0.1, 1.0, 10.0, 100.0, 1000.0)
    y = np.asarray(y, float)
    n_groups = len(np.unique(groups))
    if n_groups < n_folds:
        raise ValueError(f"{n_groups} patients are too few for {n_folds} folds")
    pred = np.zeros_like(y)
    for train, held in GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(x, y, groups):
        mean, std = y[train].mean(0), y[train].std(0) + 1e-9
        pred[held] = ridge_predictions(x[train], (y[train] - mean) / std, x[held], alphas) * std + mean
    return pred


def train_context_encoder(
    model_cfg: dict,
    dataset,
    centres_of: dict,
    window: str,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    inner: int = 1,
    outer: int = 2,
    max_centres: int = 8,
    device: str = "cpu",
) -> tuple[torch.nn.Module, list[float]]:
    """Positive control: the ViT trained on the train split to read, from the shell around each hidden centre,
    the centre's lesion label (binary cross-entropy) and its standardised intensity statistics (mean squared
    error), the two readouts of :func:`collect`. AdamW, warm-up over the first tenth, cosine decay."""
    from neurovfm.analysis.control_training import ControlTrainer

    usable = keyed_volumes(dataset, centres_of, window)
    if not usable:
        raise ValueError("no training volume has centres")
    patch = tuple(model_cfg["patch_size"])
    trainer = ControlTrainer(model_cfg, 1 + 8, steps, lr, weight_decay, seed, "context positive control", device)
    rng = np.random.default_rng(seed)

    def sample(i):
        v = dataset.volumes[i]
        c_all, lab_all, _ = centres_of[series_key(v, window)]
        patches, coords, where = foreground_tokens(dataset[i], patch)
        idx = [(where[tuple(c)], lab) for c, lab in zip(c_all.tolist(), lab_all) if tuple(c) in where]
        if not idx:
            return None
        idx = [idx[k] for k in rng.permutation(len(idx))[:max_centres]]
        centres = coords[[k for k, _ in idx]]
        group = hole_groups(centres, inner, outer, max_group=max_centres)[0]
        kept, shells = group_inputs(coords, centres, group, inner, outer)
        content = intensity_statistics(patches.numpy()[[idx[j][0] for j in group]])
        labels = np.asarray([idx[j][1] for j in group], np.float32)
        return patches[kept], torch.as_tensor(coords[kept]), shells, labels, content

    first = [s for s in (sample(int(i)) for i in rng.choice(usable, min(32, len(usable)), replace=False)) if s]
    c_mean = np.concatenate([s[4] for s in first]).mean(0)
    c_std = np.concatenate([s[4] for s in first]).std(0) + 1e-6

    def loss():
        batch = [s for s in (sample(int(i)) for i in rng.choice(usable, size=batch_size)) if s]
        x, offsets = trainer.encode([b[0] for b in batch], [b[1] for b in batch])
        pooled = torch.stack([x[o + torch.as_tensor(sh)].mean(0) for o, b in zip(offsets, batch) for sh in b[2]])
        out = trainer.head(pooled)
        y = torch.as_tensor(np.concatenate([b[3] for b in batch]), device=device)
        c = (np.concatenate([b[4] for b in batch]) - c_mean) / c_std
        return F.binary_cross_entropy_with_logits(out[:, 0], y) + F.mse_loss(
            out[:, 1:], torch.as_tensor(c, dtype=torch.float32, device=device)
        )

    for step in range(steps):
        trainer.step(step, loss)
    return trainer.finish()
