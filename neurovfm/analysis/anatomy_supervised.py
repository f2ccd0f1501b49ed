"""Positive control of the anatomy context diagnostic: an encoder trained with supervision to know where its
tokens are.

The same 3D ViT as pretraining, trained on the train split only: randomly cropped and oriented volumes (the
pretraining crop, flips and in-plane swap), every foreground token regressed onto its standardised anatomical
position (|x|, y, z in the head's own frame; :mod:`neurovfm.analysis.anatomy_context`) by a linear head on the
token features. If the diagnostic cannot score this encoder above random weights on validation patients, the
diagnostic is blind; if it can, a pretrained encoder that stays at random's level has not learned what context
tells about position. Written as an ``encoder.pt`` like pretraining's, so every feature and probe tool loads it.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

from neurovfm.analysis.anatomy_context import orient_grid, token_native_coords
from neurovfm.jepa.augment import crop_box, draw_orientation, orient, voxel_box
from neurovfm.models.packing import cu_seqlens_from_lengths
from neurovfm.models.patch_embed import patchify
from neurovfm.utils.progress import Progress

log = logging.getLogger("neurovfm")


def crop_sample(dataset, i: int, pose, patch, max_crop, flip_p: float, swap_p: float, rng: np.random.Generator):
    """(patches [n, P], coords [n, 3], native (|x|, y, z) [n, 3]) of one random oriented crop's foreground."""
    item = dataset[i]
    entry = dataset.volumes[i]
    mask = item["token_mask"].bool()
    native = token_native_coords(entry, dataset.reader.index["spacing_mm"], patch, pose)
    box = crop_box(mask.numpy(), max_crop, rng)
    image = item["image"][(slice(0, 1), *voxel_box(box, patch))]
    mask, native = mask[box], native[box]
    flips, swap = draw_orientation(rng, flip_p, swap_p)
    image, mask = orient(image, mask, flips, swap)
    native = orient_grid(native, flips, swap).reshape(-1, 3)
    patches, coords = patchify(image, patch)
    keep = mask.reshape(-1)
    nat = native[keep.numpy()]
    return patches[keep], coords[keep], np.c_[np.abs(nat[:, 0]), nat[:, 1], nat[:, 2]]


def train_anatomy_encoder(
    model_cfg: dict,
    dataset,
    positions: list[int],
    poses: dict,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    max_crop,
    flip_p: float,
    swap_p: float,
    seed: int,
    device: str = "cpu",
) -> tuple[torch.nn.Module, list[float]]:
    """Train encoder + linear head on the volumes at ``positions`` (those with a pose); returns the encoder and
    the loss per step. AdamW, linear warm-up over the first tenth, cosine decay."""
    from neurovfm.jepa.build import build_models

    usable = [i for i in positions if dataset.volumes[i]["study_id"] in poses]
    if not usable:
        raise ValueError("no training volume has a ground-truth pose")
    patch = tuple(model_cfg["patch_size"])
    torch.manual_seed(seed)
    encoder = build_models(model_cfg, encoder_only=True).to(device).train()
    head = torch.nn.Linear(encoder.embed_dim, 3).to(device)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    # target standardisation from a first pass over a sample of crops
    probe = [
        crop_sample(dataset, int(i), poses[dataset.volumes[int(i)]["study_id"]], patch, max_crop, flip_p, swap_p, rng)[
            2
        ]
        for i in rng.choice(usable, size=min(32, len(usable)), replace=False)
    ]
    mean, std = np.concatenate(probe).mean(0), np.concatenate(probe).std(0)
    mean_t, std_t = (torch.tensor(v, dtype=torch.float32, device=device) for v in (mean, std))
    warm = max(1, steps // 10)
    losses = []
    progress = Progress(steps, "anatomy positive control", unit="steps", every_s=30.0)
    for step in range(steps):
        if step < warm:
            scale = (step + 1) / warm
        else:
            scale = 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))
        for g in opt.param_groups:
            g["lr"] = lr * scale
        batch = [
            crop_sample(
                dataset, int(i), poses[dataset.volumes[int(i)]["study_id"]], patch, max_crop, flip_p, swap_p, rng
            )
            for i in rng.choice(usable, size=batch_size)
        ]
        batch = [b for b in batch if len(b[0])]
        cu, max_len = cu_seqlens_from_lengths([len(b[0]) for b in batch], device=device)
        x = encoder(
            torch.cat([b[0] for b in batch]).to(device), torch.cat([b[1] for b in batch]).to(device), cu, max_len
        )
        y = torch.as_tensor(np.concatenate([b[2] for b in batch]), dtype=torch.float32, device=device)
        y = (y - mean_t) / std_t
        loss = F.mse_loss(head(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        progress.update()
    progress.close()
    log.info("anatomy positive control: loss %.3f -> %.3f over %d steps", losses[0], np.mean(losses[-10:]), steps)
    return encoder.eval(), losses
