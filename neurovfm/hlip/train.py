"""HLIP pretraining loop: the Vol-JEPA trainer (:class:`neurovfm.jepa.train.Trainer`: AdamW with the warm-up +
cosine schedules, gradient clipping, DDP, checkpoints and resume with the settings' fingerprint, metrics and
progress lines) with study-report pairs and the per-modality CLIP objective in place of latent prediction.

Per step: a batch of training studies, half CT and half MRI (``stream``); every volume of each study through the
ViT, one attention-pooled embedding per study (``model``); the study's report through the text encoder; the CLIP
loss within each modality (``loss``). Under DDP the embeddings of every process are gathered (with their
gradients) so each modality's softmax runs over the global batch. ``encoder.pt`` holds the ViT encoder, a drop-in
for Vol-JEPA's. The texts stay in memory: no report text, tokenizer vocabulary or text-derived file is written
(``checkpoint.pt`` holds weights, the optimizer state and a digest of the texts in its fingerprint).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from pathlib import Path

import torch
import torch.distributed as dist

from neurovfm.hlip.collate import MODE_NAMES, StudyBatch, StudyCollator
from neurovfm.hlip.loss import per_modality_clip
from neurovfm.hlip.model import HLIP, build_hlip
from neurovfm.hlip.stream import MODALITIES, BalancedStudyStream
from neurovfm.hlip.text import TextTokenizer, study_texts, text_fingerprint
from neurovfm.jepa.build import model_config
from neurovfm.jepa.train import Dist, Trainer, param_groups

log = logging.getLogger("neurovfm")

# which input file each text source reads (keys of ``text_sources``; the workflow's rule inputs)
SOURCE_FILES = {"report": "reports", "findings": "findings"}

STEP_COLUMNS = [
    "step",
    "loss",
    "loss_CT",  # each modality's CLIP loss
    "loss_MR",
    "top1_CT",  # image-to-text top-1 accuracy within the modality's half of the batch (chance: 2 / batch_studies)
    "top1_MR",
    "temperature",  # 1 / logit scale
    "lr",
    "wd",
    "grad_norm",
    "tokens_per_s",
    "step_s",
    "n_volumes",
    "n_tokens",
    "n_studies",
    "context_fraction_MR",  # share of each volume's foreground the encoder saw (1: whole volumes)
    "context_fraction_CT",
]


def training_texts(model: dict, volumes: list[dict], text_sources: dict | None) -> dict[str, str]:
    """{study_id: text} of the training index's studies, from the file of the model's ``text.source``."""
    off_split = sorted({v["split"] for v in volumes if v.get("split", "train") != "train"})
    if off_split:
        raise ValueError(f"HLIP trains on the train split only; the index holds volumes of {off_split}")
    source = model["text"]["source"]
    path = (text_sources or {}).get(SOURCE_FILES[source])
    if not path:
        raise ValueError(
            f"model {model['name']!r} (objective hlip, text.source {source}) needs the "
            f"{SOURCE_FILES[source]} file (labels/findings.jsonl or the private reports.jsonl)"
        )
    texts = study_texts(source, Path(path), {v["study_id"] for v in volumes})
    if not texts:
        raise ValueError(f"no training study has a {source} text in {path}")
    return texts


class _GatherRows(torch.autograd.Function):
    """All processes' rows (each process holds the same number) in rank order. Every process computes the same
    loss of them, so the gradient of its own rows is the sum over the processes of that loss's gradient there."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """Every process's rows, in rank order; gradients flow back to each process's own rows. DDP then averages
    the parameters' gradients over the processes, which gives the gradient of the loss of the global batch."""
    return _GatherRows.apply(x) if d.enabled else x


def gather(x: torch.Tensor, d: Dist) -> torch.Tensor:
    if not d.enabled:
        return x
    out = [torch.empty_like(x) for _ in range(d.world_size)]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out)


def clip_step(
    model: HLIP | torch.nn.Module, batch: StudyBatch, optimizer, grad_clip: float, amp, d: Dist | None = None
) -> dict:
    """One optimisation step without the optimizer's update: both towers, the per-modality CLIP loss over the
    (gathered) batch, backward, clipping. Returns the loss, per-modality losses and accuracies, the temperature
    and the gradient norm (detached)."""
    d = d or Dist()
    ctx = torch.autocast(batch.patches.device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
    with ctx:
        image, text, scale = model(
            batch.patches,
            batch.coords,
            batch.cu,
            batch.max_len,
            batch.study_cu,
            batch.input_ids,
            batch.attention_mask,
        )
    image, text = gather_with_grad(image.float(), d), gather_with_grad(text.float(), d)
    loss, parts = per_modality_clip(image, text, scale.float(), gather(batch.study_modality, d))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    nan = torch.tensor(float("nan"), device=loss.device)
    out = {"loss": loss.detach(), "grad_norm": grad_norm.detach(), "temperature": 1.0 / scale.detach().float()}
    for code, m in enumerate(MODALITIES):
        out[f"loss_{m}"], out[f"top1_{m}"] = parts.get(code, (nan, nan))
    return out


class HLIPTrainer(Trainer):
    STEP_COLUMNS = STEP_COLUMNS
    MODE_NAMES = MODE_NAMES

    def __init__(self, cfg: dict, model_name: str, dataset, out_dir, d: Dist | None = None, text_sources=None):
        model = model_config(cfg["pretrain"], model_name, cfg["preprocess"]["patch"])
        self.texts = training_texts(model, dataset.volumes, text_sources)
        super().__init__(cfg, model_name, dataset, out_dir, d)
        # the texts change the weights: a checkpoint of other texts is not resumed
        digest = f"{self.fingerprint}:{text_fingerprint(self.texts)}"
        self.fingerprint = hashlib.sha256(digest.encode()).hexdigest()[:20]

    def build(self) -> None:
        self.hlip, tokenizer = build_hlip(self.model, self.texts)
        self.hlip.to(self.d.device)
        self.tokenize = TextTokenizer(tokenizer, int(self.model["text"]["max_tokens"]))
        self.optimizer = self.adamw(param_groups(self.hlip))  # one learning rate for both towers
        self.ddp = self.wrap(self.hlip)
        if self.p["export"] != "student":
            log.info("model %s (hlip) has no EMA teacher: encoder.pt holds its image encoder", self.model["name"])

    @property
    def modules(self) -> dict:
        h = self.hlip
        return {
            "encoder": h.encoder,
            "pool": h.pool,
            "image_proj": h.image_proj,
            "text": h.text,
            "text_proj": h.text_proj,
            "logit_scale": h.logit_scale,
        }

    def exported_encoder(self) -> torch.nn.Module:
        return self.hlip.encoder

    def batch_stream(self) -> BalancedStudyStream:
        return BalancedStudyStream(
            self.dataset.volumes,
            set(self.texts),
            int(self.model["batch_studies"]),
            seed=self.seed,
            rank=self.d.rank,
            world_size=self.d.world_size,
            max_volumes=int(self.model["max_volumes"]),
            min_foreground=int(self.p["min_foreground_tokens"]),
            start=self.position,
        )

    def collator(self) -> StudyCollator:
        patch = self.cfg["preprocess"]["patch"]
        return StudyCollator(
            self.p,
            patch,
            self.seed,
            self.texts,
            self.tokenize,
            rank=self.d.rank,
            max_tokens=self.model.get("max_tokens"),
        )

    def train_step(self, batch: StudyBatch, values: dict) -> tuple[dict, list[torch.Tensor]]:
        out = clip_step(self.ddp, batch, self.optimizer, float(self.p["optimizer"]["grad_clip"]), self.amp, self.d)
        names = ("loss_CT", "loss_MR", "top1_CT", "top1_MR", "temperature")
        return out, [out["loss"].float(), *(out[k].float() for k in names)]

    def after_update(self, batch: StudyBatch, values: dict, out: dict) -> None:
        """Nothing: no teacher to update."""

    def step_row(self, values: dict, out: dict, reduced: list[float], step_s: float) -> dict:
        loss, n_tokens, loss_ct, loss_mr, top1_ct, top1_mr, temperature = reduced
        return {
            "step": self.step,
            "loss": loss,
            "loss_CT": loss_ct,
            "loss_MR": loss_mr,
            "top1_CT": top1_ct,
            "top1_MR": top1_mr,
            "temperature": temperature,
            "lr": values["lr"],
            "wd": values["wd"],
            "grad_norm": float(out["grad_norm"]),
            "tokens_per_s": n_tokens / step_s,
            "step_s": step_s,
            "n_tokens": int(n_tokens),
            "n_studies": int(self.model["batch_studies"]),
        }
