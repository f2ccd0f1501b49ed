"""VideoMAE pretraining loop: the Vol-JEPA trainer (:class:`neurovfm.jepa.train.Trainer`: data stream, crops and
augmentation, packing, AdamW with the warm-up + cosine schedules, gradient clipping, DDP, checkpoints and resume,
metrics and progress) with the reconstruction objective in place of latent prediction.

Per step: each crop's foreground is split into visible (15%) and masked (85%) tokens (``masking``); the encoder
sees the visible tokens, the decoder reconstructs the masked ones, MSE against per-patch normalised voxels
(``loss``). There is no teacher: ``encoder.pt`` holds the trained encoder whatever ``pretrain.export`` says.
``metrics.csv`` has the loss, schedules, gradient norm and throughput; ``context_fractions.csv`` the visible share
of every sample.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch

from neurovfm.jepa.collate import Collator, JepaBatch
from neurovfm.jepa.train import Trainer, param_groups
from neurovfm.mae.loss import patch_targets, reconstruction_loss
from neurovfm.mae.masking import MODE_NAMES, MaeMaskSpec, spec_from_model, visible_and_masked
from neurovfm.mae.model import MaskedAutoencoder, build_mae

log = logging.getLogger("neurovfm")

STEP_COLUMNS = [
    "step",
    "loss",
    "lr",
    "wd",
    "grad_norm",
    "tokens_per_s",
    "step_s",
    "n_volumes",
    "n_tokens",
    "n_masked",
    "context_fraction_MR",  # visible share of the foreground
    "context_fraction_CT",
]


class MaskCollator(Collator):
    """The Vol-JEPA collator (same crops, augmentation, patchify and packing) with VideoMAE masks: the batch's
    context rows are the visible tokens, its target rows the masked ones."""

    def __init__(self, pretrain: dict, patch, seed: int, spec: MaeMaskSpec, rank: int = 0):
        super().__init__(pretrain, patch, seed=seed, rank=rank)
        self.spec = spec

    def draw_modes(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.full(n, self.spec.mode, dtype=np.int64)

    def draw_masks(self, fg: np.ndarray, mode: int, modality: str, rng: np.random.Generator):
        return visible_and_masked(fg, self.spec, rng)


def mae_step(
    model: MaskedAutoencoder | torch.nn.Module,
    batch: JepaBatch,
    optimizer,
    grad_clip: float,
    amp: torch.dtype | None,
    in_chans: int = 1,
    norm_pix: bool = True,
) -> dict:
    """One optimisation step without the optimizer's update: reconstruction, loss on the masked tokens, backward,
    gradient clipping. Returns the loss and gradient norm (detached)."""
    device_type = batch.patches.device.type
    ctx = torch.autocast(device_type, dtype=amp) if amp is not None else contextlib.nullcontext()
    with ctx:
        pred = model(
            batch.patches, batch.coords, batch.ctx_idx, batch.cu_ctx, batch.max_ctx, batch.tgt_idx, batch.cu_tgt
        )
    target = patch_targets(batch.patches[batch.tgt_idx], in_chans, norm_pix)
    loss = reconstruction_loss(pred, target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    return {"loss": loss.detach(), "grad_norm": grad_norm.detach()}


class MAETrainer(Trainer):
    STEP_COLUMNS = STEP_COLUMNS
    MODE_NAMES = MODE_NAMES

    def build(self) -> None:
        self.spec = spec_from_model(self.model)
        self.mae = build_mae(self.model).to(self.d.device)
        self.optimizer = self.adamw(param_groups(self.mae))  # one learning rate for encoder and decoder
        self.ddp = self.wrap(self.mae)
        if self.p["export"] != "student":
            log.info("model %s (videomae) has no EMA teacher: encoder.pt holds its encoder", self.model["name"])

    @property
    def modules(self) -> dict:
        return {"encoder": self.mae.encoder, "decoder": self.mae.decoder}

    def exported_encoder(self) -> torch.nn.Module:
        return self.mae.encoder

    def collator(self) -> MaskCollator:
        return MaskCollator(self.p, self.cfg["preprocess"]["patch"], seed=self.seed, spec=self.spec, rank=self.d.rank)

    def train_step(self, batch: JepaBatch, values: dict) -> tuple[dict, list[torch.Tensor]]:
        out = mae_step(
            self.ddp,
            batch,
            self.optimizer,
            float(self.p["optimizer"]["grad_clip"]),
            self.amp,
            in_chans=int(self.model["in_chans"]),
            norm_pix=bool(self.model["norm_pix"]),
        )
        n_masked = torch.tensor(float(batch.tgt_idx.numel()), device=batch.patches.device)
        return out, [out["loss"].float(), n_masked * self.d.world_size]  # summed, not averaged, over processes

    def after_update(self, batch: JepaBatch, values: dict, out: dict) -> None:
        """Nothing: no teacher to update."""

    def step_row(self, values: dict, out: dict, reduced: list[float], step_s: float) -> dict:
        loss, n_tokens, n_masked = reduced
        return {
            "step": self.step,
            "loss": loss,
            "lr": values["lr"],
            "wd": values["wd"],
            "grad_norm": float(out["grad_norm"]),
            "tokens_per_s": n_tokens / step_s,
            "step_s": step_s,
            "n_tokens": int(n_tokens),
            "n_masked": int(round(n_masked)),
        }
