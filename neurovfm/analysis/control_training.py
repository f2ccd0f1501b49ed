"""The training loop shared by the diagnostics' positive controls (:mod:`~neurovfm.analysis.anatomy_supervised`,
:mod:`~neurovfm.analysis.lesion_supervised`, :func:`~neurovfm.analysis.masked_context.train_context_encoder`):
the pretraining ViT plus a linear head, AdamW, linear warm-up over the first tenth of the steps then half-cosine
decay, gradient clipping at 1, a progress line and the loss of every step. Each control only says how a batch
becomes a loss."""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from neurovfm.models.packing import cu_seqlens_from_lengths
from neurovfm.utils.progress import Progress

log = logging.getLogger("neurovfm")


def warmup_cosine(step: int, steps: int) -> float:
    """Learning-rate factor at ``step`` (0-based) of ``steps``: linear warm-up over the first tenth, then
    half-cosine decay towards 0."""
    warm = max(1, steps // 10)
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


class ControlTrainer:
    """Encoder (built from ``model_cfg``, seeded) + ``torch.nn.Linear(embed_dim, out_dim)`` head, trained by
    :meth:`step` with losses that the caller computes from :meth:`encode` and :attr:`head`."""

    def __init__(
        self,
        model_cfg: dict,
        out_dim: int,
        steps: int,
        lr: float,
        weight_decay: float,
        seed: int,
        name: str,
        device: str = "cpu",
    ):
        from neurovfm.jepa.build import build_models

        torch.manual_seed(seed)
        self.device = device
        self.encoder = build_models(model_cfg, encoder_only=True).to(device).train()
        self.head = torch.nn.Linear(self.encoder.embed_dim, out_dim).to(device)
        self.params = list(self.encoder.parameters()) + list(self.head.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=lr, weight_decay=weight_decay)
        self.lr, self.steps, self.name = lr, steps, name
        self.losses: list[float] = []
        self.progress = Progress(steps, name, unit="steps", every_s=30.0)

    def encode(self, patches: list, coords: list) -> tuple[torch.Tensor, np.ndarray]:
        """Features [sum n_i, D] of several token sets packed into one sequence, and each set's offset."""
        lengths = [len(p) for p in patches]
        cu, max_len = cu_seqlens_from_lengths(lengths, device=self.device)
        x = self.encoder(torch.cat(patches).to(self.device), torch.cat(coords).to(self.device), cu, max_len)
        return x, np.cumsum([0] + lengths[:-1])

    def step(self, step: int, loss_fn) -> None:
        """Set the rate for ``step``, compute ``loss_fn()`` and take one clipped AdamW step."""
        for g in self.opt.param_groups:
            g["lr"] = self.lr * warmup_cosine(step, self.steps)
        loss = loss_fn()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.losses.append(float(loss.detach()))
        self.progress.update()

    def finish(self) -> tuple[torch.nn.Module, list[float]]:
        self.progress.close()
        log.info(
            "%s: loss %.3f -> %.3f over %d steps",
            self.name,
            self.losses[0],
            np.mean(self.losses[-10:]),
            len(self.losses),
        )
        return self.encoder.eval(), self.losses
