"""The VideoMAE objective: pixel targets normalised per patch, mean squared error on the masked tokens only.

With ``norm_pix`` each target token's voxels (per channel) are standardised by their own mean and unbiased
standard deviation, ``(x - mean) / sqrt(var + 1e-6)`` (MAE / VideoMAE ``norm_pix_loss``), so the decoder predicts
local structure rather than the intensity level. Targets come from the input and are detached: no gradient flows
into them.
"""

from __future__ import annotations

import torch
from torch import Tensor

NORM_EPS = 1e-6


def patch_targets(patches: Tensor, in_chans: int = 1, norm_pix: bool = True, eps: float = NORM_EPS) -> Tensor:
    """Reconstruction targets [N, C*pz*py*px] (float32, no gradient) of patch rows flattened as (c, dz, dy, dx)."""
    target = patches.detach().float()
    if not norm_pix:
        return target
    per_channel = target.reshape(target.shape[0], int(in_chans), -1)
    mean = per_channel.mean(-1, keepdim=True)
    var = per_channel.var(-1, unbiased=True, keepdim=True)
    return ((per_channel - mean) / torch.sqrt(var + eps)).reshape(target.shape)


def reconstruction_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean over the masked tokens of the per-token mean squared error (all tokens have the same voxel count)."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    return torch.mean((pred.float() - target) ** 2)
