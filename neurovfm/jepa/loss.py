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


def variance_penalty(pred: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """V-JEPA's optional regulariser on the predictor outputs: mean over features of relu(1 - std across the
    predicted tokens). Zero while every feature varies with unit spread; grows as predictions collapse."""
    std = torch.sqrt(pred.float().var(dim=0) + eps)
    return F.relu(1.0 - std).mean()


def embedding_spread(targets: torch.Tensor) -> torch.Tensor:
    """Mean over features of the standard deviation across tokens: near 0 when the teacher collapses to a
    constant output."""
    return targets.float().std(dim=0).mean()


def effective_rank(latents: torch.Tensor, max_rows: int = 4096) -> torch.Tensor:
    """exp(entropy) of the normalised singular values of the centred ``[N, D]`` latents (Roy & Vetterli, 2007):
    D for isotropic features, 1 when all tokens vary along one direction. The teacher spread misses a partial
    collapse onto a few directions; this does not. At most ``max_rows`` evenly strided rows are used."""
    x = latents.float()
    if x.shape[0] > max_rows:
        x = x[torch.linspace(0, x.shape[0] - 1, max_rows, device=x.device).long()]
    if not torch.isfinite(x).all():  # the non-finite loss check names the step; no SVD error first
        return torch.tensor(float("nan"), device=x.device)
    x = x - x.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(x)
    p = s / s.sum().clamp_min(1e-12)
    p = p[p > 0]
    return torch.exp(-(p * p.log()).sum())
