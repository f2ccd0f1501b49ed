"""DINOv2 pretraining loop: the Vol-JEPA trainer (:class:`neurovfm.jepa.train.Trainer`: the volume stream of the
train split, AdamW with the warm-up + cosine schedules, the EMA momentum schedule, gradient clipping, DDP,
checkpoints and resume with the settings' fingerprint, metrics and progress lines) with 2D self-distillation on
slices in place of latent prediction.

Per step: ``pretrain.batch_size`` volumes, ``slices_per_volume`` foreground slices of each (``data``), each cut into
2 global and ``n_local`` local crops (``crops``), iBOT masks on the global crops (``masking``). The teacher (EMA of
student backbone + head, no gradients) encodes the unmasked global crops; its class-token logits give the DINO
targets and its patch logits at the masked positions the iBOT targets (Sinkhorn-Knopp or centring, ``loss``). The
student encodes the masked global crops and the local crops. Loss = ``dino_weight`` x DINO (each student crop
against the teacher's *other* global crop, and every local crop against both) + ``ibot.weight`` x iBOT +
``koleo_weight`` x KoLeo (on the student's global class tokens, per global crop). The prototypes are frozen for the
first ``freeze_last_layer_steps`` steps (DINO's stabiliser). Then the optimizer step and the EMA update.
"""

from __future__ import annotations

import contextlib
import copy
import logging

import torch
from torch import nn

from neurovfm.config import ConfigError
from neurovfm.dinov2.crops import CropSpec
from neurovfm.dinov2.data import DinoBatch, DinoCollator, SliceItems
from neurovfm.dinov2.head import DINOHead
from neurovfm.dinov2.loss import TeacherTargets, dino_loss, entropy, ibot_loss, koleo
from neurovfm.dinov2.vit import DinoViT, build_vit
from neurovfm.jepa.ema import ema_update
from neurovfm.jepa.train import Dist, Trainer, fingerprint, param_groups

log = logging.getLogger("neurovfm")

MODE_NAMES = {0: "global_crop", 1: "global_crop_ibot_masked"}
STEP_COLUMNS = [
    "step",
    "loss",
    "dino_global",  # DINO loss of the global crops (each against the teacher's other global crop)
    "dino_local",  # ... of the local crops (each against both teacher global crops)
    "ibot",
    "koleo",
    "teacher_entropy",  # mean entropy of the teacher's class-token targets (log K: uniform; 0: one-hot)
    "teacher_temp",
    "lr",
    "wd",
    "momentum",
    "grad_norm",
    "tokens_per_s",
    "step_s",
    "n_volumes",
    "n_images",
    "n_tokens",
    "context_fraction_MR",  # unmasked share of the global crops' patches (iBOT)
    "context_fraction_CT",
]


class DinoModel(nn.Module):
    """Backbone + DINO head, one module (student, and its deep copy the teacher), so DDP averages both in one hook
    and the EMA runs over both."""

    def __init__(self, backbone: DinoViT, head: DINOHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, global_crops: torch.Tensor, local_crops: torch.Tensor | None, masks: torch.Tensor, student: bool):
        """-> {"cls": global class tokens [2B, D], "cls_logits": [2B, K], "patch_logits": logits of the patches
        where ``masks`` is True [M, K] (row-major over ``masks``), "local_logits": [nB, K] when local crops are
        given}. The student sees the masked patches as mask tokens (``student``), the teacher the whole crops."""
        g = self.backbone.forward_features(global_crops, masks if student else None)
        cls = g["cls"]
        out = {"cls": cls, "cls_logits": self.head(cls), "patch_logits": self.head(g["patches"][masks])}
        if local_crops is not None and local_crops.shape[0]:
            out["local_logits"] = self.head(self.backbone(local_crops))
        return out


def build_dino(model: dict) -> tuple[DinoModel, DinoModel, TeacherTargets]:
    """Student, teacher (a frozen copy) and the teacher-target state of a ``objective: dinov2`` model."""
    if float(model.get("drop_path", 0.0)):
        raise ConfigError(f"model {model.get('name')!r} (dinov2): drop_path is not implemented for the 2D ViT")
    d = model["dino"]
    backbone = build_vit(model)
    h = d["head"]
    head = DINOHead(backbone.embed_dim, int(h["prototypes"]), int(h["hidden"]), int(h["bottleneck"]), int(h["layers"]))
    student = DinoModel(backbone, head)
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    targets = TeacherTargets(int(h["prototypes"]), d["centering"], int(d["sinkhorn_iterations"]), d["center_momentum"])
    return student, teacher, targets


def teacher_temperature(step: int, total: int, temp: dict) -> float:
    """Linear from ``start`` to ``end`` over ``warmup_fraction`` of the run, then ``end`` (DINO's warm-up)."""
    warm = float(temp["warmup_fraction"]) * total
    if warm <= 0 or step >= warm:
        return float(temp["end"])
    return float(temp["start"]) + (float(temp["end"]) - float(temp["start"])) * step / warm


def swap_halves(x: torch.Tensor) -> list[torch.Tensor]:
    """[2B, ...] crop-major -> [second crop's rows, first crop's rows]: the teacher target of each student crop."""
    a, b = x.chunk(2)
    return [b, a]


def dino_losses(student_out: dict, teacher_out: dict, targets: TeacherTargets, masks, d: dict, temp: float) -> dict:
    """The weighted total and its parts (tensors); the teacher's targets use ``targets`` (updates its centres)."""
    t_cls = targets(teacher_out["cls_logits"], temp, "cls")
    s_global = student_out["cls_logits"].chunk(2)
    t_other = swap_halves(t_cls)
    global_terms = [(s, t) for s, t in zip(s_global, t_other)]
    local_terms = []
    if "local_logits" in student_out:
        t_global = t_cls.chunk(2)
        for s in student_out["local_logits"].chunk(int(d["n_local"])):
            local_terms += [(s, t) for t in t_global]
    student_temp = float(d["student_temp"])
    dino = dino_loss(global_terms + local_terms, student_temp)
    zero = dino.new_zeros(())
    out = {
        "dino": dino,
        "dino_global": dino_loss(global_terms, student_temp).detach(),
        "dino_local": dino_loss(local_terms, student_temp).detach() if local_terms else zero,
        "ibot": zero,
        "koleo": zero,
        "teacher_entropy": entropy(t_cls).detach(),
    }
    ibot_w = float(d["ibot"]["weight"])
    if ibot_w and bool(masks.any()):
        t_patch = targets(teacher_out["patch_logits"], temp, "patch")
        out["ibot"] = ibot_loss(student_out["patch_logits"], t_patch, masks, student_temp)
    koleo_w = float(d["koleo_weight"])
    if koleo_w:
        out["koleo"] = sum(koleo(c) for c in student_out["cls"].chunk(2))
    out["loss"] = float(d["dino_weight"]) * dino + ibot_w * out["ibot"] + koleo_w * out["koleo"]
    return out


def dino_step(
    student,
    teacher: DinoModel,
    targets: TeacherTargets,
    batch: DinoBatch,
    d: dict,
    temp: float,
    optimizer,
    grad_clip: float,
    amp: torch.dtype | None,
    freeze_last_layer: bool = False,
) -> dict:
    """One optimisation step without the optimizer's update and the EMA: both networks, the losses, backward,
    (the prototypes' gradients dropped while frozen), clipping. Returns the losses and gradient norm (detached)."""
    ctx = torch.autocast(batch.global_crops.device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
    with ctx:
        with torch.no_grad():
            teacher_out = teacher(batch.global_crops, None, batch.masks, student=False)
        student_out = student(batch.global_crops, batch.local_crops, batch.masks, student=True)
    out = dino_losses(student_out, teacher_out, targets, batch.masks, d, temp)
    optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    if freeze_last_layer:
        module = student.module if hasattr(student, "module") else student
        for p in module.head.last_layer.parameters():
            p.grad = None
    params = [p for g in optimizer.param_groups for p in g["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    return {k: v.detach() for k, v in out.items()} | {"grad_norm": grad_norm.detach()}


class DinoTrainer(Trainer):
    STEP_COLUMNS = STEP_COLUMNS
    MODE_NAMES = MODE_NAMES

    def __init__(self, cfg: dict, model_name: str, dataset, out_dir, d: Dist | None = None):
        super().__init__(cfg, model_name, dataset, out_dir, d)
        # the slice-wise feature settings (`slices`) do not change the trained weights
        model = {k: v for k, v in self.model.items() if k != "slices"}
        self.fingerprint = fingerprint(model, self.p, self.seed, dataset.volumes)

    def build(self) -> None:
        self.dino = self.model["dino"]
        self.student, self.teacher, self.targets = build_dino(self.model)
        self.student.to(self.d.device)
        self.teacher.to(self.d.device)
        self.targets.to(self.d.device)
        self.optimizer = self.adamw(param_groups(self.student))  # one learning rate for backbone and head
        self.ddp = self.wrap(self.student)

    @property
    def modules(self) -> dict:
        return {"student": self.student, "teacher": self.teacher, "targets": self.targets}

    def exported_encoder(self) -> torch.nn.Module:
        """The student's backbone (the paper's convention, ``pretrain.export: student``) or the teacher's."""
        which = self.p["export"]
        if which not in ("student", "teacher"):
            raise ValueError(f"pretrain.export must be 'student' or 'teacher', got {which!r}")
        return (self.student if which == "student" else self.teacher).backbone

    def items(self) -> SliceItems:
        return SliceItems(
            self.dataset, self.seed, self.d.rank, self.p["ct_window_probs"], int(self.dino["slices_per_volume"])
        )

    def collator(self) -> DinoCollator:
        spec = CropSpec.from_model(self.model)
        patch = self.cfg["preprocess"]["patch"][1:]
        return DinoCollator(spec, self.dino["ibot"], int(self.dino["patch"]), patch, self.seed, self.d.rank)

    def batch_tokens(self, batch: DinoBatch) -> int:
        """Tokens through the student (class token + patches of every crop)."""
        p = int(self.dino["patch"])
        g, l_ = batch.global_crops, batch.local_crops
        return g.shape[0] * (1 + (g.shape[-1] // p) ** 2) + l_.shape[0] * (1 + (l_.shape[-1] // p) ** 2)

    def train_step(self, batch: DinoBatch, values: dict) -> tuple[dict, list[torch.Tensor]]:
        temp = teacher_temperature(self.step, self.total, self.dino["teacher_temp"])
        values["teacher_temp"] = temp
        out = dino_step(
            self.ddp,
            self.teacher,
            self.targets,
            batch,
            self.dino,
            temp,
            self.optimizer,
            float(self.p["optimizer"]["grad_clip"]),
            self.amp,
            freeze_last_layer=self.step < int(self.dino["freeze_last_layer_steps"]),
        )
        names = ("dino_global", "dino_local", "ibot", "koleo", "teacher_entropy")
        return out, [out["loss"].float(), *(out[k].float() for k in names)]

    def after_update(self, batch: DinoBatch, values: dict, out: dict) -> None:
        ema_update(self.teacher, self.student, values["momentum"])

    def step_row(self, values: dict, out: dict, reduced: list[float], step_s: float) -> dict:
        loss, n_tokens, dino_g, dino_l, ibot, kol, ent = reduced
        return {
            "step": self.step,
            "loss": loss,
            "dino_global": dino_g,
            "dino_local": dino_l,
            "ibot": ibot,
            "koleo": kol,
            "teacher_entropy": ent,
            "teacher_temp": values["teacher_temp"],
            "lr": values["lr"],
            "wd": values["wd"],
            "momentum": values["momentum"],
            "grad_norm": float(out["grad_norm"]),
            "tokens_per_s": n_tokens / step_s,
            "step_s": step_s,
            "n_tokens": int(n_tokens),
            "n_volumes": int(self.p["batch_size"]),
            "n_images": self.local_batch * int(self.dino["slices_per_volume"]) * self.d.world_size,
        }
