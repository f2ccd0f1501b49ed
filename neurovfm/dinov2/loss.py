"""The DINOv2 losses and teacher targets.

- Teacher targets (:func:`sinkhorn_knopp`, :class:`Centering`): the teacher's prototype logits become target
  distributions either by Sinkhorn-Knopp normalisation (DINOv2's default: ``exp(logits / T)`` scaled alternately so
  that every prototype gets the same total mass over the batch and every sample sums to 1; 3 iterations) or by
  DINO's centring (``softmax((logits - c) / T)`` with ``c`` an EMA of the batch mean of the logits). Both keep the
  teacher from putting every sample on one prototype (collapse). Under DDP the batch sums and means run over all
  processes.
- :func:`dino_loss`: cross-entropy ``-sum_k p_teacher log softmax(s / T_student)`` of student class-token logits
  against teacher targets, averaged over the samples of each (student crop, teacher crop) pair and then over the
  pairs.
- :func:`ibot_loss`: the same cross-entropy on the *masked patches* of the student's global crops against the
  teacher's targets for the same patches of the unmasked crop; per image the mean over its masked patches, then the
  mean over all global-crop images (an image without a mask counts zero), as DINOv2.
- :func:`koleo`: the Kozachenko-Leonenko entropy estimator's regulariser on L2-normalised student class tokens,
  ``-mean_i log(min_{j != i} ||x_i - x_j||)``: it pushes each sample away from its nearest neighbour, spreading the
  batch over the sphere.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _all_reduce(x: torch.Tensor, op=None) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(x, op=op or dist.ReduceOp.SUM)
    return x


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@torch.no_grad()
def sinkhorn_knopp(logits: torch.Tensor, temp: float, iterations: int = 3) -> torch.Tensor:
    """Teacher logits ``[N, K]`` (this process's rows of the batch) -> targets ``[N, K]``, each row summing to 1,
    each prototype's column summing to ``N_total / K`` over the whole batch after the last column step."""
    logits = logits.float() / temp
    top = _all_reduce(logits.max().clone(), dist.ReduceOp.MAX)
    q = torch.exp(logits - top).t()  # [K, N]; the shift cancels in the normalisation
    k = q.shape[0]
    n = _all_reduce(torch.tensor(float(q.shape[1]), device=q.device))
    q /= _all_reduce(q.sum())
    for _ in range(iterations):
        q /= _all_reduce(q.sum(dim=1, keepdim=True))  # every prototype the same mass ...
        q /= k
        q /= q.sum(dim=0, keepdim=True)  # ... every sample a distribution
        q /= n
    return (q * n).t()


class Centering(nn.Module):
    """DINO's centring: targets ``softmax((logits - center) / T)``; :meth:`update` moves ``center`` towards the batch
    mean of the logits (``center <- m center + (1 - m) mean``)."""

    def __init__(self, prototypes: int, momentum: float = 0.9):
        super().__init__()
        self.momentum = float(momentum)
        self.register_buffer("center", torch.zeros(1, prototypes))

    @torch.no_grad()
    def targets(self, logits: torch.Tensor, temp: float) -> torch.Tensor:
        return F.softmax((logits.float() - self.center) / temp, dim=-1)

    @torch.no_grad()
    def update(self, logits: torch.Tensor) -> None:
        total = _all_reduce(logits.float().sum(dim=0, keepdim=True))
        n = _all_reduce(torch.tensor(float(logits.shape[0]), device=logits.device))
        self.center.mul_(self.momentum).add_(total / n, alpha=1.0 - self.momentum)


class TeacherTargets(nn.Module):
    """Targets of the class tokens and of the masked patches (a centre each; checkpointed with the weights)."""

    def __init__(self, prototypes: int, method: str, iterations: int = 3, momentum: float = 0.9):
        super().__init__()
        if method not in ("sinkhorn_knopp", "centering"):
            raise ValueError(f"dino.centering must be sinkhorn_knopp or centering, got {method!r}")
        self.method, self.iterations = method, int(iterations)
        self.cls = Centering(prototypes, momentum)
        self.patch = Centering(prototypes, momentum)

    @torch.no_grad()
    def __call__(self, logits: torch.Tensor, temp: float, which: str) -> torch.Tensor:
        if self.method == "sinkhorn_knopp":
            return sinkhorn_knopp(logits, temp, self.iterations)
        center = self.cls if which == "cls" else self.patch
        out = center.targets(logits, temp)
        center.update(logits)
        return out


def cross_entropy(student_logits: torch.Tensor, teacher_probs: torch.Tensor, student_temp: float) -> torch.Tensor:
    """Per row ``-sum_k p_k log softmax(s / T)_k`` ``[N]``."""
    return -(teacher_probs * F.log_softmax(student_logits.float() / student_temp, dim=-1)).sum(dim=-1)


def dino_loss(pairs: list[tuple[torch.Tensor, torch.Tensor]], student_temp: float) -> torch.Tensor:
    """Mean over ``pairs`` of (student logits ``[B, K]``, teacher targets ``[B, K]``) of the mean cross-entropy."""
    return torch.stack([cross_entropy(s, t, student_temp).mean() for s, t in pairs]).mean()


def ibot_loss(
    student_logits: torch.Tensor, teacher_probs: torch.Tensor, masks: torch.Tensor, student_temp: float
) -> torch.Tensor:
    """``student_logits`` / ``teacher_probs`` ``[M, K]``: the masked patches, in the row-major order of
    ``masks[masks]`` (``masks`` ``[n_images, n_patches]`` bool)."""
    per_patch = cross_entropy(student_logits, teacher_probs, student_temp)
    counts = masks.sum(dim=1).clamp(min=1)
    weight = (1.0 / counts.float()).unsqueeze(1).expand_as(masks)[masks]
    return (per_patch * weight).sum() / masks.shape[0]


def koleo(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KoLeo regulariser of ``x`` ``[B, D]`` (B >= 2)."""
    x = F.normalize(x.float(), dim=-1, eps=eps)
    with torch.no_grad():
        dots = x @ x.t()
        dots.fill_diagonal_(-2.0)  # below any cosine: never one's own neighbour
        nearest = dots.argmax(dim=1)
    distance = F.pairwise_distance(x, x[nearest], p=2, eps=eps)
    return -torch.log(distance + eps).mean()


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the rows of ``probs`` (nats): log K for uniform targets, 0 for one-hot ones."""
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=-1).mean()
