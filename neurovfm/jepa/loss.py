"""The Vol-JEPA objective: smooth L1 between predicted and normalised teacher latents."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def teacher_targets(latents: torch.Tensor) -> torch.Tensor:
    """Teacher output -> regression targets: LayerNorm over the feature dimension, no affine parameters."""
    return F.layer_norm(latents.float(), latents.shape[-1:])


def jepa_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Smooth L1 (beta 1), mean over target tokens and features, in float32."""
    return F.smooth_l1_loss(pred.float(), target.float(), beta=1.0, reduction="mean")


def embedding_spread(targets: torch.Tensor) -> torch.Tensor:
    """Mean over features of the standard deviation across tokens: near 0 when the teacher collapses to a
    constant output."""
    return targets.float().std(dim=0).mean()
