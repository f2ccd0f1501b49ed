"""Training monitors that mean something at demo size, computed every ``pretrain.monitor_every`` steps from the
batch at hand (closed-form fits: no state, no random numbers, so they never change the trained weights or a
resumed run).

* ``target_erank_<MR|CT>``: effective rank of the LayerNorm-ed teacher targets *within* each volume, averaged per
  modality. The batch-wide rank mixes volumes and windows; a teacher that maps every token of a volume to one
  direction scores 1 here whatever the other volumes do.
* ``floor_loss``: the smooth-L1 loss of a positions-only predictor (ridge regression from the target tokens'
  sine-cosine position codes to the targets, fitted on half of the batch's volumes and scored on the other
  half), beside ``pred_loss_heldout``, the real predictor's loss on the same held-out targets. The predictor
  earns its keep only below this floor; the gap is what the context contributes.
* ``self_content_r2``: R^2 of a ridge readout from the student encoder's context features to each token's own
  intensity statistics (mean and standard deviation of its voxels), fitted and scored on disjoint halves of the
  batch: a student that throws away what its tokens contain drops here.
* ``teacher_drift``: ||teacher - teacher at step 0|| / ||teacher at step 0|| over all teacher parameters. With a
  momentum schedule built for a far longer run the teacher can stay close to its random initialisation, so its
  targets stay random-network features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neurovfm.jepa.loss import effective_rank, teacher_targets
from neurovfm.models.pos_embed import sincos_3d

MONITOR_COLUMNS = [
    "target_erank_MR",
    "target_erank_CT",
    "floor_loss",
    "pred_loss_heldout",
    "self_content_r2",
    "teacher_drift",
]


def ridge_fit(x: torch.Tensor, y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ridge regression with an unpenalised intercept, in float64: returns (weights, x mean, y mean)."""
    x, y = x.double(), y.double()
    xm, ym = x.mean(0, keepdim=True), y.mean(0, keepdim=True)
    xc = x - xm
    gram = xc.T @ xc + alpha * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    w = torch.linalg.solve(gram, xc.T @ (y - ym))
    return w, xm, ym


def ridge_predict(model, x: torch.Tensor) -> torch.Tensor:
    w, xm, ym = model
    return (x.double() - xm) @ w + ym


def r2_score(y: torch.Tensor, pred: torch.Tensor) -> float:
    """Coefficient of determination averaged over output columns."""
    y, pred = y.double(), pred.double()
    ss_res = ((y - pred) ** 2).sum(0)
    ss_tot = ((y - y.mean(0, keepdim=True)) ** 2).sum(0).clamp_min(1e-12)
    return float((1.0 - ss_res / ss_tot).mean())


def half_split(cu: torch.Tensor) -> torch.Tensor:
    """Per packed row: True for rows of even-numbered volumes (the fitting half), False for odd ones."""
    lengths = (cu[1:] - cu[:-1]).long()
    vol = torch.repeat_interleave(torch.arange(len(lengths), device=cu.device), lengths)
    return vol % 2 == 0


def within_volume_rank(latents: torch.Tensor, cu: torch.Tensor, modality: list[str]) -> dict:
    """Mean effective rank of the LayerNorm-ed targets within each volume, per modality (NaN without one)."""
    targets = teacher_targets(latents)
    ranks = {"MR": [], "CT": []}
    for i, mod in enumerate(modality):
        rows = targets[int(cu[i]) : int(cu[i + 1])]
        if rows.shape[0] >= 2:
            ranks.setdefault(mod, []).append(float(effective_rank(rows)))
    return {
        f"target_erank_{m}": (sum(v) / len(v) if v else float("nan")) for m, v in ranks.items() if m in ("MR", "CT")
    }


def position_floor(
    pred: torch.Tensor,
    targets: torch.Tensor,
    tgt_coords: torch.Tensor,
    cu_tgt: torch.Tensor,
    pos_dim: int,
    alpha: float,
) -> dict:
    """Held-out loss of a positions-only ridge predictor and of the real predictor on the same targets."""
    fit = half_split(cu_tgt)
    if fit.all() or not fit.any():
        return {"floor_loss": float("nan"), "pred_loss_heldout": float("nan")}
    codes = sincos_3d(tgt_coords, pos_dim).to(targets.device)
    model = ridge_fit(codes[fit], targets[fit], alpha)
    floor = ridge_predict(model, codes[~fit]).float()
    return {
        "floor_loss": float(F.smooth_l1_loss(floor, targets[~fit].float(), beta=1.0)),
        "pred_loss_heldout": float(F.smooth_l1_loss(pred[~fit].float(), targets[~fit].float(), beta=1.0)),
    }


def self_content(features: torch.Tensor, patches: torch.Tensor, cu_ctx: torch.Tensor, alpha: float) -> float:
    """R^2 of a ridge readout of each context token's own voxel mean and standard deviation."""
    fit = half_split(cu_ctx)
    if fit.all() or not fit.any():
        return float("nan")
    stats = torch.stack([patches.float().mean(1), patches.float().std(1)], 1)
    model = ridge_fit(features[fit], stats[fit], alpha)
    return r2_score(stats[~fit], ridge_predict(model, features[~fit]))


class TeacherDrift:
    """Relative distance of the teacher from its weights when this object was made (step 0)."""

    def __init__(self, teacher: torch.nn.Module):
        self.start = {n: p.detach().clone() for n, p in teacher.named_parameters()}
        self.norm = torch.sqrt(sum((p.double() ** 2).sum() for p in self.start.values()))

    def __call__(self, teacher: torch.nn.Module) -> float:
        diff = sum(((p.detach().double() - self.start[n].double()) ** 2).sum() for n, p in teacher.named_parameters())
        return float(torch.sqrt(diff) / self.norm)
