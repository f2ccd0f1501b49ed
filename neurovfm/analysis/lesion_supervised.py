"""Positive control of the token-level lesion check: an encoder trained with supervision to tell lesion tokens
from their intensity-matched controls.

The same 3D ViT as pretraining, trained on train-split volumes only: each volume whole (its foreground tokens,
capped at ``max_tokens`` by dropping unlabelled ones at random), a linear head on the token features, binary
cross-entropy on the tokens of the lesion check's selection (lesion = 1, matched control = 0). If the lesion
check cannot score this encoder above random weights on validation patients, the check is blind to learned lesion
features; if it can, a pretrained encoder that stays at random's level has not learned them. Written as an
``encoder.pt`` like pretraining's, so every feature and probe tool loads it.
"""

from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F

from neurovfm.analysis.masked_context import foreground_tokens, keyed_volumes, series_key


def labels_by_series(tokens: dict, keep: np.ndarray | None = None) -> dict[tuple[str, str], dict]:
    """(series, window) -> {token-grid coordinate tuple: label} of the selected tokens (``keep``: a boolean
    subset, e.g. the train split's patients)."""
    keep = np.ones(len(tokens["label"]), bool) if keep is None else np.asarray(keep, bool)
    out: dict[tuple[str, str], dict] = {}
    series, window = np.asarray(tokens["series"]).astype(str), np.asarray(tokens["window"]).astype(str)
    for n in np.flatnonzero(keep):
        out.setdefault((series[n], window[n]), {})[tuple(int(c) for c in tokens["coords"][n])] = int(tokens["label"][n])
    return out


def volume_sample(dataset, i: int, labels: dict, patch, max_tokens: int, rng: np.random.Generator):
    """(patches [n, P], coords [n, 3], labelled positions [m], labels [m]) of one whole volume's foreground
    tokens; when there are more than ``max_tokens``, unlabelled tokens are dropped at random."""
    patches, coords, _ = foreground_tokens(dataset[i], patch)
    coords = torch.as_tensor(coords)
    keys = [tuple(row) for row in coords.tolist()]
    lab_pos = np.asarray([k for k, key in enumerate(keys) if key in labels], int)
    others = np.setdiff1d(np.arange(len(keys)), lab_pos)
    room = max(0, max_tokens - len(lab_pos))
    if len(others) > room:
        others = rng.choice(others, room, replace=False)
    keep = np.sort(np.concatenate([lab_pos, others]))
    where = {int(k): n for n, k in enumerate(keep)}
    pos = np.asarray([where[int(k)] for k in lab_pos], int)
    y = np.asarray([labels[keys[k]] for k in lab_pos], np.float32)
    return patches[keep], coords[keep], pos, y


def train_lesion_encoder(
    model_cfg: dict,
    dataset,
    labels: dict[tuple[str, str], dict],
    window: str,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    max_tokens: int = 4096,
    device: str = "cpu",
) -> tuple[torch.nn.Module, list[float]]:
    """Train encoder + linear head on the volumes of ``dataset`` with labelled tokens (``labels`` from
    :func:`labels_by_series`; ``window``: the CT window the dataset reads, MR volumes use ``mri``). AdamW, linear
    warm-up over the first tenth, cosine decay. Returns the encoder and the loss per step."""
    from neurovfm.analysis.control_training import ControlTrainer

    usable = keyed_volumes(dataset, labels, window)
    if not usable:
        raise ValueError("no training volume has labelled tokens")
    patch = tuple(model_cfg["patch_size"])
    trainer = ControlTrainer(model_cfg, 1, steps, lr, weight_decay, seed, "lesion positive control", device)
    rng = np.random.default_rng(seed)

    def loss():
        batch = []
        for i in rng.choice(usable, size=batch_size):
            v = dataset.volumes[int(i)]
            batch.append(volume_sample(dataset, int(i), labels[series_key(v, window)], patch, max_tokens, rng))
        x, offsets = trainer.encode([b[0] for b in batch], [b[1] for b in batch])
        idx = torch.as_tensor(np.concatenate([o + b[2] for o, b in zip(offsets, batch)]), device=device)
        y = torch.as_tensor(np.concatenate([b[3] for b in batch]), device=device)
        return F.binary_cross_entropy_with_logits(trainer.head(x[idx]).squeeze(-1), y)

    for step in range(steps):
        trainer.step(step, loss)
    return trainer.finish()
