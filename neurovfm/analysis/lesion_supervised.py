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

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

from neurovfm.models.packing import cu_seqlens_from_lengths
from neurovfm.models.patch_embed import patchify
from neurovfm.utils.progress import Progress

log = logging.getLogger("neurovfm")


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
    item = dataset[i]
    mask = item["token_mask"].bool().reshape(-1)
    patches, coords = patchify(item["image"], patch)
    patches, coords = patches[mask], coords[mask]
    keys = [tuple(int(c) for c in row) for row in coords.tolist()]
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
    from neurovfm.jepa.build import build_models

    usable = [
        i
        for i, v in enumerate(dataset.volumes)
        if (v["series_id"], "mri" if v["modality"] == "MR" else window) in labels
    ]
    if not usable:
        raise ValueError("no training volume has labelled tokens")
    patch = tuple(model_cfg["patch_size"])
    torch.manual_seed(seed)
    encoder = build_models(model_cfg, encoder_only=True).to(device).train()
    head = torch.nn.Linear(encoder.embed_dim, 1).to(device)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    warm = max(1, steps // 10)
    losses = []
    progress = Progress(steps, "lesion positive control", unit="steps", every_s=30.0)
    for step in range(steps):
        scale = (
            (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))
        )
        for g in opt.param_groups:
            g["lr"] = lr * scale
        batch = []
        for i in rng.choice(usable, size=batch_size):
            v = dataset.volumes[int(i)]
            key = (v["series_id"], "mri" if v["modality"] == "MR" else window)
            batch.append(volume_sample(dataset, int(i), labels[key], patch, max_tokens, rng))
        cu, max_len = cu_seqlens_from_lengths([len(b[0]) for b in batch], device=device)
        x = encoder(
            torch.cat([b[0] for b in batch]).to(device), torch.cat([b[1] for b in batch]).to(device), cu, max_len
        )
        offsets = np.cumsum([0] + [len(b[0]) for b in batch[:-1]])
        idx = torch.as_tensor(np.concatenate([o + b[2] for o, b in zip(offsets, batch)]), device=device)
        y = torch.as_tensor(np.concatenate([b[3] for b in batch]), device=device)
        loss = F.binary_cross_entropy_with_logits(head(x[idx]).squeeze(-1), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        progress.update()
    progress.close()
    log.info("lesion positive control: loss %.3f -> %.3f over %d steps", losses[0], np.mean(losses[-10:]), steps)
    return encoder.eval(), losses
