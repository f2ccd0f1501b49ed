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


import numpy as np
import torch
import torch.nn.functional as F

from neurovfm.analysis.anatomy_context import orient_grid, token_native_coords
from neurovfm.jepa.augment import crop_box, draw_orientation, orient, voxel_box
from neurovfm.models.patch_embed import patchify


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
    from neurovfm.analysis.control_training import ControlTrainer

    usable = [i for i in positions if dataset.volumes[i]["study_id"] in poses]
    if not usable:
        raise ValueError("no training volume has a ground-truth pose")
    patch = tuple(model_cfg["patch_size"])
    trainer = ControlTrainer(model_cfg, 3, steps, lr, weight_decay, seed, "anatomy positive control", device)
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

    def loss():
        batch = [
            crop_sample(
                dataset, int(i), poses[dataset.volumes[int(i)]["study_id"]], patch, max_crop, flip_p, swap_p, rng
            )
            for i in rng.choice(usable, size=batch_size)
        ]
        batch = [b for b in batch if len(b[0])]
        x, _ = trainer.encode([b[0] for b in batch], [b[1] for b in batch])
        y = torch.as_tensor(np.concatenate([b[2] for b in batch]), dtype=torch.float32, device=device)
        return F.mse_loss(trainer.head(x), (y - mean_t) / std_t)

    for step in range(steps):
        trainer.step(step, loss)
    return trainer.finish()
