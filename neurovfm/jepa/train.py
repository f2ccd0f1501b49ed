"""Vol-JEPA pretraining loop: one process, or one per GPU under ``torchrun`` (DDP, env:// rendezvous).

Per step: the student (encoder + predictor, DDP-wrapped) predicts the latents of the target tokens from
the context tokens; the teacher (EMA of the student encoder, no gradients) encodes all foreground tokens
of the same augmented crops; smooth L1 against the layer-normalised teacher latents; AdamW with warm-up +
cosine learning rate, scheduled weight decay, gradient clipping; then the EMA update.

A run resumes from ``checkpoint.pt`` in its output folder when that checkpoint belongs to the same
settings and is not finished, and then ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from neurovfm.jepa import checkpoint as ckpt
from neurovfm.jepa.build import Student, build_models, model_config
from neurovfm.jepa.objectives import objective
from neurovfm.jepa.collate import Collator, JepaBatch
from neurovfm.jepa.ema import ema_update
from neurovfm.jepa import monitors
from neurovfm.jepa.loss import effective_rank, embedding_spread, jepa_loss, teacher_targets, variance_penalty
from neurovfm.jepa.masking import MODE_NAMES
from neurovfm.jepa.metrics import STEP_COLUMNS, MetricsLog, modality_means, sample_rows
from neurovfm.jepa.schedules import Schedules
from neurovfm.jepa.stream import BatchStream, EpochItems
from neurovfm.jepa.subset import restrict_dataset, write_records
from neurovfm.utils.progress import Progress

log = logging.getLogger("neurovfm")

# pretrain keys that do not change the trained weights (left out of the resume fingerprint)
_BOOKKEEPING = {
    "train",
    "export",
    "workers",
    "checkpoint_every",
    "log_every",
    "sample_log_every",
    "progress_every_s",
    "figure_samples",
    "monitor",
}


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step."""


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed() -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return Dist(rank=rank, world_size=world, device=device)


def pretrain_seed(cfg: dict) -> int:
    """``pretrain.seed`` (initial weights, data order, crops and masks), or the run's seed when it is null: a
    second pretraining seed leaves the export, splits and ground truth of the run as they are."""
    seed = cfg["pretrain"]["seed"]
    return int(cfg["seed"] if seed is None else seed)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA and fp32 on CPU for ``auto``; None means no autocast."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


NO_DECAY_NAMES = ("mask_token",)


def param_groups(module: torch.nn.Module, predictor_lr_scale: float = 1.0) -> list[dict]:
    """Weight decay on weight matrices only: biases, norm scales and the predictor's mask token (a [1, C] vector,
    decayed towards zero it would fade the only content the targets' inputs share) are not decayed. Parameters
    under ``predictor.`` get ``predictor_lr_scale`` times the scheduled learning rate (1: one rate for all; under
    AdamW the decay step is lr x wd, so the scale multiplies the predictor's decay as well)."""
    groups = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.ndim >= 2 and name.rsplit(".", 1)[-1] not in NO_DECAY_NAMES
        scale = float(predictor_lr_scale) if name.startswith("predictor.") else 1.0
        if (decay, scale) not in groups:
            groups[(decay, scale)] = {
                "params": [],
                "decay": decay,
                "lr_scale": scale,
                **({} if decay else {"weight_decay": 0.0}),
            }
        groups[(decay, scale)]["params"].append(p)
    return list(groups.values())


def apply_schedules(optimizer: torch.optim.Optimizer, values: dict) -> None:
    """This step's learning rate (times each group's ``lr_scale``) and weight decay (decayed groups only)."""
    for group in optimizer.param_groups:
        group["lr"] = values["lr"] * group["lr_scale"]
        if group["decay"]:
            group["weight_decay"] = values["wd"]


def fingerprint(model: dict, pretrain: dict, seed: int, volumes: list[dict]) -> str:
    """What a run's weights depend on: the model, the settings, the seed and the training volumes, each by its ID
    and by what its shard entry says of its content (shape, foreground size, intensity moments), so that a checkpoint
    left by a run on another export with the same IDs (a regenerated synthetic one, a re-preprocessed one) is not
    resumed."""
    settings = {k: v for k, v in pretrain.items() if k not in _BOOKKEEPING and k != "models"}
    content = [
        [v["series_id"], v.get("shape"), (v.get("mask") or {}).get("n_foreground"), v.get("moments")] for v in volumes
    ]
    blob = json.dumps(
        {"model": model, "pretrain": settings, "seed": seed, "volumes": content},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def jepa_step(
    student,
    teacher,
    batch: JepaBatch,
    optimizer,
    grad_clip: float,
    amp: torch.dtype | None,
    variance_weight: float = 0.0,
) -> dict:
    """One optimisation step (without the EMA update). Returns loss, grad norm and teacher spread as tensors,
    and the predictions, targets and teacher latents (detached) for the monitors. ``variance_weight`` adds
    V-JEPA's variance term on the predictions (0: the plain objective; ``loss`` is always the plain one)."""
    device_type = batch.patches.device.type
    ctx = torch.autocast(device_type, dtype=amp) if amp is not None else contextlib.nullcontext()
    with ctx:
        pred = student(
            batch.patches, batch.coords, batch.ctx_idx, batch.cu_ctx, batch.max_ctx, batch.tgt_idx, batch.cu_tgt
        )
        with torch.no_grad():
            latents = teacher(batch.patches, batch.coords, batch.cu, batch.max_len)
    targets = teacher_targets(latents[batch.tgt_idx])  # LayerNorm is per token: select first
    loss = jepa_loss(pred, targets)
    total = loss + variance_weight * variance_penalty(pred) if variance_weight else loss
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    return {
        "loss": loss.detach(),
        "grad_norm": grad_norm.detach(),
        "spread": embedding_spread(targets).detach(),
        "erank": effective_rank(latents.detach()),
        "pred": pred.detach(),
        "targets": targets.detach(),
        "latents": latents.detach(),
    }


def _all_sum(values: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled:
        values = values.clone()
        dist.all_reduce(values)
    return values


def _gather(obj, d: Dist) -> list:
    if not d.enabled:
        return [obj]
    out = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


class Trainer:
    """The Vol-JEPA trainer. Data stream, schedules, checkpoints and resume, metrics and the loop are shared with
    other objectives (the VideoMAE baseline, :mod:`neurovfm.mae.train`, on the same batches; HLIP,
    :mod:`neurovfm.hlip.train`, on study-report pairs, which also overrides :meth:`batch_stream`; DINOv2 on slices,
    :mod:`neurovfm.dinov2.train`, which also overrides :meth:`items` and :meth:`batch_tokens`), which override
    :meth:`build`, :meth:`collator`, :meth:`train_step`, :meth:`after_update`, :meth:`step_row`, :attr:`modules`
    and :meth:`exported_encoder`."""

    STEP_COLUMNS = STEP_COLUMNS  # columns of metrics.csv
    MODE_NAMES = MODE_NAMES  # masking configuration id -> name (config column of context_fractions.csv)

    def __init__(self, cfg: dict, model_name: str, dataset, out_dir: str | Path, d: Dist | None = None):
        self.cfg, self.p = cfg, cfg["pretrain"]
        self.d = d or Dist()
        self.out = Path(out_dir)
        self.dataset = dataset
        # items as stored (store.dataset.LazyVolume): the collators read, normalise and orient only the tokens they
        # keep, the same values bit for bit as from the whole image (tests/test_store_roundtrip.py)
        dataset.lazy = True
        self.model = model_config(self.p, model_name, cfg["preprocess"]["patch"])
        self.total = int(self.model.get("steps") or self.p["steps"])  # a model's own budget, else the shared one
        if int(self.p["batch_size"]) % self.d.world_size:
            raise ValueError(
                f"pretrain.batch_size {self.p['batch_size']} is not divisible by the {self.d.world_size} processes"
            )
        self.local_batch = int(self.p["batch_size"]) // self.d.world_size
        self.seed = pretrain_seed(cfg)
        self.fingerprint = fingerprint(self.model, self.p, self.seed, dataset.volumes)
        self.schedules = Schedules(self.p, self.total)
        self.amp = autocast_dtype(self.p["precision"], self.d.device)

        seed_everything(self.seed)
        self.build()
        self.metrics = MetricsLog(self.out, self.STEP_COLUMNS)
        self.step, self.position = 0, (0, 0)

    # -- what an objective defines (neurovfm.mae.train.MAETrainer overrides these) ------------------------------
    def build(self) -> None:
        """The trained modules, the optimizer and the (DDP) module the step calls, from the seeded global RNG."""
        encoder, predictor, self.teacher = build_models(self.model)
        self.student = Student(encoder, predictor).to(self.d.device)
        self.teacher.to(self.d.device).eval()
        self.optimizer = self.adamw(param_groups(self.student, self.p["optimizer"]["predictor_lr_scale"]))
        self.ddp = self.wrap(self.student)
        self.drift = monitors.TeacherDrift(self.teacher)  # before a resume restores trained weights

    def adamw(self, groups: list[dict]) -> torch.optim.AdamW:
        """AdamW over ``groups`` (see :func:`param_groups`) with the start values of the schedules."""
        opt = self.p["optimizer"]
        return torch.optim.AdamW(
            groups, lr=opt["lr"]["start"], betas=tuple(opt["betas"]), weight_decay=opt["weight_decay"]["start"]
        )

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` under DistributedDataParallel when there are several processes, else as it is."""
        if not self.d.enabled:
            return module
        return DistributedDataParallel(module, device_ids=[self.d.device] if self.d.device.type == "cuda" else None)

    # -- checkpoints -------------------------------------------------------------------------------
    @property
    def modules(self) -> dict:
        return {"encoder": self.student.encoder, "predictor": self.student.predictor, "teacher": self.teacher}

    def exported_encoder(self) -> torch.nn.Module:
        """What ``encoder.pt`` holds: the student (the paper's choice for downstream use) or the EMA teacher."""
        which = self.p["export"]
        if which not in ("student", "teacher"):
            raise ValueError(f"pretrain.export must be 'student' or 'teacher', got {which!r}")
        return self.student.encoder if which == "student" else self.teacher

    def try_resume(self) -> bool:
        path = self.out / ckpt.CHECKPOINT
        if not path.is_file():
            return False
        state = ckpt.load(path)
        if state.get("fingerprint") != self.fingerprint:
            log.info("%s belongs to other settings or data: training from scratch", path)
            return False
        if state["step"] >= self.total:
            log.info("%s is a finished run (step %d): training again from scratch", path, state["step"])
            return False
        ckpt.restore(state, self.modules, self.optimizer)
        self.step = int(state["step"])
        if state["world_size"] == self.d.world_size:
            mine = state["ranks"][self.d.rank]
            self.position = tuple(mine["position"])
            ckpt.set_rng_state(mine["rng"])
        else:
            epoch = max(r["position"][0] for r in state["ranks"]) + 1
            self.position = (epoch, 0)
            log.warning(
                "checkpoint was written by %d processes, this run has %d: data order restarts at "
                "epoch %d (weights and optimizer state are resumed)",
                state["world_size"],
                self.d.world_size,
                epoch,
            )
        self.metrics.resume(self.step)
        log.info("resumed from %s at step %d of %d", path, self.step, self.total)
        return True

    def save_checkpoint(self) -> None:
        ranks = _gather({"position": list(self.position), "rng": ckpt.rng_state()}, self.d)
        if self.d.rank == 0:
            state = ckpt.training_state(
                self.step, self.modules, self.optimizer, ranks, {"fingerprint": self.fingerprint, "model": self.model}
            )
            ckpt.save(self.out / ckpt.CHECKPOINT, state)
            self.metrics.write()
        if self.d.enabled:
            dist.barrier()

    # -- loop --------------------------------------------------------------------------------------
    def batch_stream(self) -> BatchStream:
        """The dataset keys of this process's batches from :attr:`position` on (HLIP streams whole studies)."""
        return BatchStream(
            self.dataset.volumes,
            self.local_batch,
            seed=self.seed,
            rank=self.d.rank,
            world_size=self.d.world_size,
            ct_fraction=self.p["ct_fraction"],
            min_foreground=int(self.p["min_foreground_tokens"]),
            start=self.position,
        )

    def items(self) -> Dataset:
        """The loader's dataset, read by the stream's ``(epoch, offset, index)`` keys (DINOv2 reads slices)."""
        return EpochItems(self.dataset)

    def batch_tokens(self, batch) -> int:
        """Tokens of a batch (the throughput column of metrics.csv)."""
        return int(batch.patches.shape[0])

    def loader(self) -> DataLoader:
        stream = self.batch_stream()
        collate = self.collator()
        workers = int(self.p["workers"])
        # its own generator: creating the iterator must not draw from the global torch RNG (which drop-path
        # uses and which a resume restores), or a resumed run would diverge
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.items(),
            batch_sampler=stream,
            collate_fn=collate,
            num_workers=workers,
            pin_memory=self.d.device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=2 if workers else None,
            generator=generator,
        )

    def collator(self) -> Collator:
        """Crops, augmentation, masks and packing of a batch (picklable for loader workers)."""
        return Collator(self.p, self.cfg["preprocess"]["patch"], seed=self.seed, rank=self.d.rank)

    def set_schedules(self, values: dict) -> None:
        apply_schedules(self.optimizer, values)

    def monitor(self, batch: JepaBatch, out: dict) -> dict:
        """This process's monitor values (see :mod:`neurovfm.jepa.monitors`) on the step's batch."""
        mcfg = self.p["monitor"]
        alpha = float(mcfg["ridge_alpha"])
        encoder = self.student.encoder
        devices = [self.d.device] if self.d.device.type == "cuda" else []
        # eval mode and a forked RNG: the monitor must not draw the drop-path randomness training uses
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            encoder.eval()
            try:
                ctx_features = encoder(
                    batch.patches[batch.ctx_idx], batch.coords[batch.ctx_idx], batch.cu_ctx, batch.max_ctx
                ).float()
            finally:
                encoder.train()
        values = monitors.within_volume_rank(out["latents"].float(), batch.cu, batch.modality)
        values.update(
            monitors.position_floor(
                out["pred"], out["targets"], batch.coords[batch.tgt_idx], batch.cu_tgt, int(mcfg["position_dim"]), alpha
            )
        )
        values["self_content_r2"] = monitors.self_content(
            ctx_features, batch.patches[batch.ctx_idx], batch.cu_ctx, alpha
        )
        values["teacher_drift"] = self.drift(self.teacher)
        return values

    def train_step(self, batch: JepaBatch, values: dict) -> tuple[dict, list[torch.Tensor]]:
        """Forward, backward and clipping (not the optimizer step): (outputs, this process's statistics, the
        loss first, the token count second, then values averaged over the processes like the loss)."""
        out = jepa_step(
            self.ddp,
            self.teacher,
            batch,
            self.optimizer,
            float(self.p["optimizer"]["grad_clip"]),
            self.amp,
            float(self.p["loss"]["variance_weight"]),
        )
        return out, [out["loss"].float(), out["spread"].float(), out["erank"].float()]

    def after_update(self, batch: JepaBatch, values: dict, out: dict) -> None:
        """After the optimizer step: the EMA update of the teacher, then (some steps) the monitors."""
        ema_update(self.teacher, self.student.encoder, values["momentum"])
        every = int(self.p["monitor"]["every"])
        if self.d.rank == 0 and every and (self.step % every == 0 or self.step + 1 == self.total):
            out["monitor"] = self.monitor(batch, out)  # rank 0's batch: a sample, not a reduction

    def step_row(self, values: dict, out: dict, reduced: list[float], step_s: float) -> dict:
        """This step's row of metrics.csv (``reduced``: the statistics of :meth:`train_step`, reduced)."""
        loss, n_tokens, spread, erank = reduced
        return {
            "step": self.step,
            "loss": loss,
            **values,
            "grad_norm": float(out["grad_norm"]),
            "tokens_per_s": n_tokens / step_s,
            "step_s": step_s,
            "n_tokens": int(n_tokens),
            "teacher_spread": spread,
            "teacher_erank": erank,
            **out.get("monitor", {}),
        }

    def log_step(self, batch: JepaBatch, values: dict, out: dict, reduced: torch.Tensor, step_s: float) -> None:
        every_log = (self.step % int(self.p["log_every"]) == 0) or self.step + 1 == self.total
        every_sample = self.step % int(self.p["sample_log_every"]) == 0
        if not (every_log or every_sample):
            return
        parts = _gather(
            (batch.modality, batch.mode.tolist(), batch.n_foreground.tolist(), batch.n_context.tolist()), self.d
        )
        if self.d.rank != 0:
            return
        modality = [m for p in parts for m in p[0]]
        fraction = np.concatenate([np.asarray(p[3], float) / np.asarray(p[2], float) for p in parts])
        if every_log:
            row = self.step_row(values, out, [float(x) for x in reduced], step_s)
            self.metrics.add_step({"n_volumes": len(modality), **row, **modality_means(modality, fraction)})
        if every_sample:
            for r, p in enumerate(parts):
                self.metrics.add_samples(sample_rows(self.step, r, *p, names=self.MODE_NAMES))

    def run(self, stop_after: int | None = None) -> dict:
        """Train to ``pretrain.steps``. ``stop_after`` (tests) returns after that many steps of this call
        without the final save, as a killed job would."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.try_resume()
        progress = Progress(
            self.total - self.step, f"pretrain {self.model['name']}", unit="steps", every_s=float("inf")
        )
        every_s, last_line = float(self.p["progress_every_s"]), time.monotonic()
        data = iter(self.loader())
        done_here, first_loss, loss = 0, None, float("nan")
        while self.step < self.total:
            t0 = time.perf_counter()
            batch = next(data).to(self.d.device)
            values = self.schedules.at(self.step)
            self.set_schedules(values)
            out, stats = self.train_step(batch, values)
            n_tokens = torch.tensor(float(self.batch_tokens(batch)), device=self.d.device)
            reduced = _all_sum(torch.stack([stats[0], n_tokens, *stats[1:]]), self.d)
            reduced[0] /= self.d.world_size
            reduced[2:] /= self.d.world_size
            loss = float(reduced[0])
            if not math.isfinite(loss):
                raise NonFiniteLossError(
                    f"pretraining stopped: the loss is {loss} at step {self.step} "
                    f"(model {self.model['name']}); the last good checkpoint is "
                    f"{self.out / ckpt.CHECKPOINT}"
                )
            self.optimizer.step()
            self.after_update(batch, values, out)
            if self.d.device.type == "cuda":
                torch.cuda.synchronize(self.d.device)
            self.log_step(batch, values, out, reduced.cpu(), time.perf_counter() - t0)
            first_loss = loss if first_loss is None else first_loss
            self.step += 1
            self.position = batch.position
            done_here += 1
            progress.update()
            if self.d.rank == 0 and time.monotonic() - last_line >= every_s:
                last_line = time.monotonic()
                log.info("%s, loss %.4f, lr %.2e", progress.line(), loss, values["lr"])
            if stop_after is not None and done_here >= stop_after:
                return {"step": self.step, "stopped": True}
            if self.step % int(self.p["checkpoint_every"]) == 0 or self.step == self.total:
                self.save_checkpoint()
        if self.d.rank == 0:
            ckpt.save_encoder(self.out / ckpt.ENCODER, self.exported_encoder(), self.model, self.step)
            progress.close()
            log.info(
                "pretraining %s finished: step %d, loss %.4f -> %.4f; encoder written to %s",
                self.model["name"],
                self.step,
                first_loss,
                loss,
                self.out / ckpt.ENCODER,
            )
        if self.d.enabled:
            dist.barrier()
        return {"step": self.step, "stopped": False, "first_loss": first_loss, "last_loss": loss}


def trainer_class(model: dict) -> type[Trainer]:
    """The trainer of a ``pretrain.models`` entry's ``objective``: ``vjepa`` (the default), ``videomae``, ``hlip``
    or ``dinov2``."""
    kind = objective(model)
    # these modules import this one
    if kind == "videomae":
        from neurovfm.mae.train import MAETrainer  # noqa: PLC0415

        return MAETrainer
    if kind == "hlip":
        from neurovfm.hlip.train import HLIPTrainer  # noqa: PLC0415

        return HLIPTrainer
    if kind == "dinov2":
        from neurovfm.dinov2.train import DinoTrainer  # noqa: PLC0415

        return DinoTrainer
    return Trainer


def use_data(dataset, model: dict, cfg: dict, model_name: str, out_dir: str | Path, write: bool = True):
    """Cut ``dataset`` down to the model's ``data_fraction`` of the train split's studies and its ``modalities``
    (:mod:`neurovfm.jepa.subset`; keyed by the run's seed, so pretraining seeds share the data), and record which
    studies it trains on in ``out_dir`` (``data.json``, ``studies.csv``) when ``write``."""
    subset = restrict_dataset(dataset, model, seed=int(cfg["seed"]), model_name=model_name)
    if write:
        write_records(out_dir, subset)
    counts = ", ".join(f"{m} {len(subset.studies[m])} of {subset.available[m]} studies" for m in subset.studies)
    log.info(
        "pretraining %s on data_fraction %g of the train split (%s; %d volumes)",
        model_name,
        subset.fraction,
        counts,
        len(subset.keep),
    )
    return subset


def train(
    cfg: dict,
    model_name: str,
    dataset,
    out_dir: str | Path,
    threads: int | None = None,
    stop_after: int | None = None,
    text_sources: dict | None = None,
) -> dict:
    """Pretrain ``pretrain.models[model_name]`` on ``dataset`` (a VolumeDataset or the same interface) with the
    model's objective (Vol-JEPA, the VideoMAE baseline or HLIP), writing checkpoint.pt, encoder.pt, metrics.csv
    and context_fractions.csv to ``out_dir``, and first data.json and studies.csv: the studies of the model's
    ``data_fraction`` and ``modalities`` it trains on (:func:`use_data`). ``text_sources`` (HLIP only):
    {"findings": labels/findings.jsonl, "reports": the private reports.jsonl}, the files its ``text.source`` may
    read."""
    if threads:
        torch.set_num_threads(int(threads))
    model = cfg["pretrain"]["models"].get(model_name, {})
    trainer = trainer_class(model)
    extra = {"text_sources": text_sources} if objective(model) == "hlip" else {}
    d = init_distributed()
    try:
        use_data(dataset, model, cfg, model_name, out_dir, write=d.rank == 0)
        return trainer(cfg, model_name, dataset, out_dir, d, **extra).run(stop_after=stop_after)
    finally:
        if d.enabled and dist.is_initialized():
            dist.destroy_process_group()
