"""Two-stage vision-instruction tuning (LLaVA-1.5 style) over frozen encoder tokens.

Stage 1 trains the connector only, on the findings as one string; stage 2 trains the connector and the LLM
(all weights, or LoRA adapters through peft) on the fixed instruction, answering a JSON list. AdamW, linear
warm-up then half-cosine decay per stage. The order of the training items is a pure function of (seed,
stage, epoch), so a run resumed from ``checkpoint.pt`` (weights, optimiser, RNG, stage and step) continues
exactly as an uninterrupted run would. Under ``torchrun`` (``dist`` enabled) the model is sharded or replicated
(:mod:`.distributed`), each rank trains on its slice of every batch and rank 0 writes gathered checkpoints in
the same format. Outputs: ``lm/`` (the LLM, LoRA merged, with its tokenizer),
``connector.pt`` (written last), ``metrics.csv`` and ``curated.csv`` (the drawn study ids).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neurovfm.jepa.checkpoint import load as load_checkpoint
from neurovfm.jepa.checkpoint import rng_state, save as save_checkpoint, set_rng_state
from neurovfm.jepa.schedules import learning_rate
from neurovfm.utils.atomic import atomic_dir, atomic_path, write_csv
from neurovfm.utils.progress import Progress

from . import distributed as dd
from . import lm as lm_mod
from .connector import IGNORE, Connector
from .label_head import LabelHead, balanced_pos_weight, uses_label_loss
from .prompt import encode, stage1_target, stage2_target
from .tokenizer import IMAGE, token_id

log = logging.getLogger("neurovfm")
CHECKPOINT, CONNECTOR, LM_DIR = "checkpoint.pt", "connector.pt", "lm"


def seed_of(cfg: dict) -> int:
    rg = cfg["reportgen"]
    return int(rg["seed"] if rg["seed"] is not None else cfg["seed"])


def stage_config(rg: dict, stage: int) -> dict:
    """Settings of a stage: 0 is the demo LM's text-only pretraining (``lm.text_pretrain``), 1 and 2 the paper's."""
    if stage == 0:
        return {"micro_batch_size": None, **rg["lm"]["text_pretrain"]}
    return rg[f"stage{stage}"]


def training_texts_pool(findings: dict, studies) -> list[str]:
    """Reported training studies with features: the demo LM's tokenizer and stage 0 read all of them, whatever the
    curated size, so that every size starts from the same LM (as every size starts from the same Qwen3)."""
    return sorted(s for s, r in findings.items() if r.get("split") == "train" and studies.has(s))


def text_pretraining(rg: dict) -> bool:
    """Stage 0 runs for the tiny demo LM only: a local LM (``lm.path``) arrives pretrained, as Qwen3 does."""
    return not rg["lm"]["path"] and int(rg["lm"]["text_pretrain"]["steps"]) > 0


def stage_steps(size: int, stage: dict) -> int:
    return max(1, math.ceil(size * float(stage["epochs"]) / int(stage["batch_size"])))


def batch_items(items: list, step: int, batch_size: int, seed: int, stage: int) -> list:
    """Items of ``step``: consecutive positions of the per-epoch permutations (seed, stage, epoch)."""
    n, out = len(items), []
    for pos in range(step * batch_size, (step + 1) * batch_size):
        epoch, k = divmod(pos, n)
        perm = np.random.default_rng([seed, stage, epoch]).permutation(n)
        out.append(items[perm[k]])
    return out


def trainable_state(module: torch.nn.Module) -> dict:
    return {n: p.detach().cpu().clone() for n, p in module.named_parameters() if p.requires_grad}


def load_trainable(module: torch.nn.Module, state: dict) -> None:
    params = dict(module.named_parameters())
    missing = sorted(set(state) - set(params))
    trainable = {n for n, p in params.items() if p.requires_grad}
    if missing or trainable != set(state):
        raise ValueError(
            f"checkpoint does not match the model's trainable parameters "
            f"(unknown {missing[:3]}, differing {sorted(trainable ^ set(state))[:3]})"
        )
    with torch.no_grad():
        for n, v in state.items():
            params[n].copy_(v)


def collate(examples, pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, labels and attention mask of a batch."""
    T = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), T), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), T), dtype=torch.long)
    for b, e in enumerate(examples):
        ids[b, : len(e.ids)] = torch.tensor(e.ids)
        labels[b, : len(e.labels)] = torch.tensor(e.labels)
        mask[b, : len(e.ids)] = 1
    return ids.to(device), labels.to(device), mask.to(device)


class Trainer:
    """Holds the model parts and the data of one run; :meth:`run` trains both stages."""

    def __init__(
        self,
        cfg: dict,
        studies,
        findings: dict,
        indications: dict,
        curated: list[str],
        out_dir: Path,
        model=None,
        tokenizer=None,
        dist=None,
        labels: tuple | None = None,
        text_only: bool = False,
        text_stage: str | Path | None = None,
    ):
        """``text_only``: the demo LM's stage 0 alone (:mod:`.text_stage`; no connector, no label head, no
        checkpoints). ``text_stage``: a file of that job; when its fingerprint is this run's, stage 0 is taken
        from it instead of being trained again (the same weights, RNG state and loss rows)."""
        self.cfg, self.rg = cfg, cfg["reportgen"]
        self.text_only, self.text_stage = text_only, text_stage
        self.studies, self.findings, self.indications = studies, findings, indications
        self.curated, self.out = curated, Path(out_dir)
        self.pool = training_texts_pool(findings, studies) if not self.rg["lm"]["path"] else []
        # stage 1's pairs: the curated draws, or every reported training study once per epoch
        self.stage1_ids = (
            list(self.curated) if self.rg["stage1"]["studies"] == "curated" else training_texts_pool(findings, studies)
        )
        self.seed = seed_of(cfg)
        self.dist = dist if dist is not None and dist.enabled else None
        self.rank, self.world = (self.dist.rank, self.dist.world_size) if self.dist else (0, 1)
        self.strategy = self.rg["distributed"]["strategy"]
        if self.dist and self.strategy == "fsdp" and self.rg["stage2"]["finetune"] == "lora":
            raise ValueError(
                "reportgen.stage2.finetune 'lora' under torchrun needs distributed.strategy 'ddp' "
                "(the adapters are added after FSDP has sharded the LLM); or use finetune 'full'"
            )
        if self.dist and text_pretraining(self.rg):
            raise ValueError(
                "reportgen.lm.text_pretrain (the tiny demo LM's text-only stage) runs in one process; "
                "set its epochs to 0 under torchrun"
            )
        self.device = self.dist.device if self.dist else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        torch.manual_seed(self.seed)
        if model is None:
            texts = self.tokenizer_texts()
            model, tokenizer = lm_mod.build(self.rg["lm"], texts, self.seed)
        if self.rg["lm"]["gradient_checkpointing"]:
            lm_mod.enable_checkpointing(model)
        # FSDP moves each layer to the GPU as it shards it: the whole LLM never sits on one GPU
        self.model = model if self.dist and self.strategy == "fsdp" else model.to(self.device)
        self.tokenizer = tokenizer
        self.n_latents = int(self.rg["perceiver"]["latents"])
        self.rows: list[dict] = []
        precision = self.rg["precision"]
        bf16 = self.device.type == "cuda" and precision in ("auto", "bf16")
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else nullcontext()
        self.bf16 = bf16
        if text_only:  # the connector and label head are built under their own seeds: leaving them out changes no draw
            self.connector, self.label_head, self.label_targets, self.step = None, None, {}, None
            self.fingerprint = self.text_fingerprint()
            return
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            self.connector = Connector(studies.dim, model.config.hidden_size, self.rg["perceiver"]).to(self.device)
        self.label_head, self.label_targets = self._label_head(labels, int(model.config.hidden_size))
        self.image_id = token_id(tokenizer, IMAGE)
        self.fingerprint = self._fingerprint()
        self.step = self.plain_step = dd.LlavaStep(self.connector, self.model, self.image_id, self.label_head)
        if self.dist:
            dd.check_same_tokenizer(tokenizer)
            if self.strategy == "fsdp":  # FSDP2 follows requires_grad changes; DDP is wrapped per stage
                self.step = dd.wrap(self.plain_step, self.strategy, self.device, bf16)
            log.info("%s over %d processes (rank %d on %s)", self.strategy, self.world, self.rank, self.device)

    def label_weight(self, stage: int) -> float:
        """Weight of the auxiliary label loss in ``stage`` (0: none; stage 0 is text only)."""
        return float(self.rg[f"stage{stage}"]["label_loss_weight"]) if stage in (1, 2) else 0.0

    def _label_head(self, labels: tuple | None, llm_dim: int):
        """The auxiliary diagnosis head (:mod:`.label_head`) when a stage weights its loss, else (None, {})."""
        if not uses_label_loss(self.rg):
            return None, {}
        if labels is None:
            raise ValueError("reportgen.stage*.label_loss_weight > 0 needs the training studies' label tables")
        targets, names = labels
        trained = set(self.curated) | set(self.stage1_ids)
        missing = sorted(trained - set(targets))
        if missing:
            raise KeyError(f"{len(missing)} training studies have no label row (e.g. {missing[:3]})")
        targets = {s: targets[s] for s in sorted(trained)}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 2)
            head = LabelHead(llm_dim, names, balanced_pos_weight(targets, names)).to(self.device)
        return head, targets

    def tokenizer_texts(self) -> list[str]:
        p = self.rg["prompt"]
        texts = [p["system"], p["instruction"], p["normal_text"], "Indication:"]
        for sid in sorted(set(self.curated) | set(self.pool) | set(self.stage1_ids)):
            f = self.findings[sid]["findings"]
            texts += [stage1_target(f, p["normal_text"]), stage2_target(f)]
        return texts

    def _fingerprint(self) -> str:
        """What the trained weights depend on: the settings, the seed, the curated studies and the data behind them
        (their findings and indications, the tokenizer's vocabulary, which series feed each study), so that a
        checkpoint left by a run on other data is not resumed. Memory settings (micro-batches, activation
        checkpointing) are left out: a run that ran out of memory may resume with smaller micro-batches."""
        rg = {
            k: v
            for k, v in self.rg.items()
            if k not in ("progress_every_s", "generation", "triage", "frontier", "cost", "eval", "distributed")
        }
        rg["lm"] = {k: v for k, v in rg["lm"].items() if k != "gradient_checkpointing"}
        for stage in ("stage1", "stage2"):
            rg[stage] = {k: v for k, v in rg[stage].items() if k != "micro_batch_size"}
        sids = sorted(set(self.curated) | set(self.pool) | set(self.stage1_ids))
        data = {
            "findings": [self.findings[s]["findings"] for s in sids],
            "indications": [self.indications.get(s) for s in sids],
            "series": [self.studies.entries(s) for s in sorted(set(self.curated) | set(self.stage1_ids))],
            "vocab": sorted(self.tokenizer.get_vocab().items()),
        }
        blob = json.dumps(
            {"reportgen": rg, "seed": self.seed, "curated": self.curated, "data": data}, sort_keys=True, default=str
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def text_fingerprint(self) -> str:
        """What stage 0 depends on: the settings it reads, the seed, the device type, the studies it draws from
        (their findings and indications) and the tokenizer's vocabulary. Equal in a text-only job and in the
        training run of any curated size on the same studies."""
        rg = {k: self.rg[k] for k in ("lm", "prompt", "optimizer", "max_seq_len", "perceiver", "precision")}
        rg["lm"] = {k: v for k, v in rg["lm"].items() if k != "gradient_checkpointing"}
        data = {
            "pool": self.pool,
            "findings": [self.findings[s]["findings"] for s in self.pool],
            "indications": [self.indications.get(s) for s in self.pool],
            "vocab": sorted(self.tokenizer.get_vocab().items()),
        }
        blob = json.dumps(
            {"reportgen": rg, "seed": self.seed, "device": self.device.type, "data": data}, sort_keys=True, default=str
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    # -- one step ---------------------------------------------------------------------------------
    def draw(self, sid: str, step: int, stream: int) -> float:
        """A uniform number of (seed, step, study, stream), so that a resumed run draws the same. Stream 0 (the
        indication dropout) keeps the three-number seed it had before stream 1 existed, so its draws are unchanged."""
        key = int.from_bytes(hashlib.sha256(sid.encode()).digest()[:8], "little")
        entropy = [self.seed, step, key] if stream == 0 else [self.seed, step, key, stream]
        return float(np.random.default_rng(entropy).random())

    def keeps_indication(self, sid: str, step: int) -> bool:
        """Stage 2 with ``indication_dropout`` p: the indication is left out of a study's prompt at a step with
        probability p."""
        p = float(self.rg["stage2"]["indication_dropout"])
        return p <= 0 or self.draw(sid, step, 0) >= p

    def plain_text(self, sid: str, step: int) -> bool:
        """Stage 0 with ``lm.text_pretrain.plain_share`` p: the study's example is in stage 1's form (the findings
        as one string after an empty user turn) with probability p, else in stage 2's."""
        p = float(self.rg["lm"]["text_pretrain"]["plain_share"])
        return p > 0 and self.draw(sid, step, 1) < p

    def example(self, sid: str, stage: int, indication: bool = True, plain: bool = False):
        """Stage 1: images -> findings as one string (no other text: the paper's connector pre-training maps image
        features to the findings); stage 2: images, indication, instruction -> JSON list; stage 0 (text-only
        pretraining of the demo LM), without images, so the LM learns the findings' language (as a pretrained LLM
        knows it): the instruction and the JSON list, with the indication only if ``lm.text_pretrain.indication``
        (the clinical knowledge a pretrained LLM brings, at the risk of an indication -> findings shortcut that lets
        stages 1 and 2 leave the image unused); with ``plain`` the findings as one string after an empty user turn,
        stage 1's form, so that the frozen LM of stage 1 already writes that form and the connector has only the
        study to add."""
        p = self.rg["prompt"]
        plain = plain and stage == 0
        with_indication = (stage == 2 and indication) or (
            stage == 0 and not plain and self.rg["lm"]["text_pretrain"]["indication"]
        )
        n_series = 0 if stage == 0 else len(self.studies.entries(sid))
        f = self.findings[sid]["findings"]
        stage1_form = stage == 1 or plain
        target = stage1_target(f, p["normal_text"]) if stage1_form else stage2_target(f)
        return encode(
            self.tokenizer,
            p["system"],
            n_series,
            self.indications.get(sid) if with_indication else None,
            None if stage1_form else p["instruction"],  # stage 0 (JSON form) and 2
            target,
            self.n_latents,
            int(self.rg["max_seq_len"]),
        )

    def accumulate(self, sids: list[str], stage: int, micro: int, step: int = 0) -> torch.Tensor:
        """Backward over ``sids`` in micro-batches of at most ``micro`` studies; each micro-batch's token-loss sum
        is divided by the target tokens of all of ``sids``, so the gradients equal one pass over the whole batch
        (the auxiliary label loss likewise, by its share of the studies). Returns the batch's mean loss (detached)."""
        examples = [
            self.example(
                s, stage, stage != 2 or self.keeps_indication(s, step), stage == 0 and self.plain_text(s, step)
            )
            for s in sids
        ]
        weight = self.label_weight(stage)
        n_items = sum(int((torch.tensor(e.labels[1:]) != IGNORE).sum()) for e in examples)
        num_items = torch.tensor(max(n_items, 1), device=self.device)
        total = torch.zeros((), device=self.device)
        starts = list(range(0, len(sids), micro))
        for k, a in enumerate(starts):
            part, ex = sids[a : a + micro], examples[a : a + micro]
            ids, labels, mask = collate(ex, self.tokenizer.pad_token_id, self.device)
            with dd.gradient_sync(self.step, k == len(starts) - 1):
                with self.autocast:  # the forward only: backward passes do not run under autocast
                    if stage == 0:  # text only (one process: refused under torchrun)
                        loss = self.model(
                            input_ids=ids, attention_mask=mask, labels=labels, num_items_in_batch=num_items
                        ).loss
                    else:
                        aux = None
                        if weight > 0:
                            y = [torch.from_numpy(self.label_targets[s][1]) for s in part]
                            aux = ([self.label_targets[s][0] for s in part], y, weight * len(part) / len(sids))
                        loss = self.step(
                            ids,
                            mask,
                            labels,
                            [[t.to(self.device) for t in self.studies(s)] for s in part],
                            num_items,
                            aux,
                        )
                loss.backward()
            total += loss.detach().float()
        return total

    # -- stages -----------------------------------------------------------------------------------
    def setup_stage(self, stage: int) -> list[torch.nn.Parameter]:
        for p in self.model.parameters():
            p.requires_grad_(False)
        if stage == 0:
            for p in self._connector_parameters():
                p.requires_grad_(False)
            for p in self._head_parameters():
                p.requires_grad_(False)
            for p in self.model.parameters():
                p.requires_grad_(True)
            return [p for p in self.model.parameters()]
        for p in self.connector.parameters():
            p.requires_grad_(True)
        for p in self._head_parameters():
            p.requires_grad_(self.label_weight(stage) > 0)
        if stage == 2:
            if self.rg["stage2"]["finetune"] == "lora":
                from peft import LoraConfig, get_peft_model

                lc = self.rg["lora"]
                self.model = get_peft_model(
                    self.model,
                    LoraConfig(
                        r=int(lc["r"]),
                        lora_alpha=float(lc["alpha"]),
                        lora_dropout=float(lc["dropout"]),
                        target_modules=list(lc["target_modules"]),
                        task_type="CAUSAL_LM",
                    ),
                )
                self.plain_step.lm = self.model
            else:
                for p in self.model.parameters():
                    p.requires_grad_(True)
        params = list(self.connector.parameters()) + [p for p in self.model.parameters() if p.requires_grad]
        params += [p for p in self._head_parameters() if p.requires_grad]
        if self.dist and self.strategy == "ddp":  # DDP reduces the parameters trainable when it is built
            self.step = dd.wrap(self.plain_step, self.strategy, self.device, self.bf16)
        return params

    def stage_items(self, stage: int) -> list[str]:
        """The studies a stage draws its batches from: stage 0 every reported training study (the demo LM's text),
        stage 1 ``stage1.studies`` (the curated draws or every reported training study), stage 2 the curated draws."""
        return {0: self.pool, 1: self.stage1_ids}.get(stage, self.curated)

    def _head_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.label_head.parameters()) if self.label_head is not None else []

    def _connector_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.connector.parameters()) if self.connector is not None else []

    def _optimizer(self, stage: int, params) -> torch.optim.Optimizer:
        opt_cfg = self.rg["optimizer"]
        return torch.optim.AdamW(
            params,
            lr=float(stage_config(self.rg, stage)["lr"]),
            betas=tuple(opt_cfg["betas"]),
            weight_decay=float(opt_cfg["weight_decay"]),
        )

    def run_text_stage(self) -> None:
        """Stage 0 alone (``text_only``): the weights, RNG state and rows that :meth:`take_text_stage` loads."""
        if not self.text_only:
            raise ValueError("run_text_stage needs a Trainer built with text_only=True")
        params = self.setup_stage(0)
        self.train_stage(0, int(stage_config(self.rg, 0)["steps"]), 0, self._optimizer(0, params), params)

    def take_text_stage(self) -> bool:
        """Stage 0 from the file of the text-only job (``text_stage``) when it was trained for exactly this run
        (:meth:`text_fingerprint`): its LM weights, RNG state and loss rows, as if stage 0 had run here. False
        (stage 0 trains here) when there is no file or it was trained on other studies or settings."""
        if self.text_stage is None:
            return False
        from .text_stage import load_text_stage

        saved = load_text_stage(self.text_stage)
        if not saved["enabled"] or saved["fingerprint"] != self.text_fingerprint():
            log.warning(
                "the text-only stage in %s was trained on other studies or settings than this run's: "
                "stage 0 trains here",
                Path(self.text_stage).name,
            )
            return False
        self.model.load_state_dict(saved["lm"], strict=True)
        set_rng_state(saved["rng"])
        self.rows = list(saved["rows"])
        log.info("stage 0 taken from the text-only job (%d steps)", len(saved["rows"]))
        return True

    def run(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        state = self._resume_state()
        for stage in (0, 1, 2) if text_pretraining(self.rg) else (1, 2):
            sc = stage_config(self.rg, stage)
            total = int(sc["steps"]) if stage == 0 else stage_steps(len(self.stage_items(stage)), sc)
            if state is not None and state["stage"] > stage:
                log.info("stage %d finished in the checkpoint", stage)
                continue
            if stage == 0 and state is None and self.take_text_stage():
                continue
            params = self.setup_stage(stage)
            optimizer = self._optimizer(stage, params)
            start = 0
            if state is not None and state["stage"] == stage:
                self.restore(state, optimizer)
                start = state["step"]
                log.info("resuming stage %d at step %d/%d", stage, start, total)
            self.train_stage(stage, total, start, optimizer, params)
        self.export()

    def train_stage(self, stage: int, total: int, start: int, optimizer, params) -> None:
        sc, opt_cfg = stage_config(self.rg, stage), self.rg["optimizer"]
        peak = float(sc["lr"])
        warmup = int(round(float(opt_cfg["warmup_fraction"]) * total))
        bs = int(sc["batch_size"])
        micro = int(sc["micro_batch_size"] or bs)
        self.model.train()
        if self.connector is not None:
            self.connector.train()
        progress = Progress(
            total - start,
            f"report generation stage {stage}",
            log,
            every_s=float(self.rg["progress_every_s"]),
            unit="steps",
        )
        for step in range(start, total):
            lr = learning_rate(step, total, 0.0, peak, peak * float(opt_cfg["final_lr_fraction"]), warmup)
            for g in optimizer.param_groups:
                g["lr"] = lr
            t0 = time.perf_counter()
            items = batch_items(self.stage_items(stage), step, bs, self.seed, stage)
            optimizer.zero_grad(set_to_none=True)
            loss = self.accumulate(
                dd.rank_items(items, self.rank, self.world) if self.dist else items, stage, micro, step
            )
            if float(opt_cfg["grad_clip"]) > 0:
                torch.nn.utils.clip_grad_norm_(params, float(opt_cfg["grad_clip"]))
            optimizer.step()
            value = dd.mean_over_ranks(loss) if self.dist else float(loss.detach())
            self.rows.append(
                {"stage": stage, "step": step + 1, "loss": value, "lr": lr, "seconds": time.perf_counter() - t0}
            )
            progress.update()
            # a text-only job keeps no checkpoint: rerun after a kill, it trains the same weights again (tens of seconds)
            if not self.text_only and ((step + 1) % int(self.rg["checkpoint_every"]) == 0 or step + 1 == total):
                self.checkpoint(stage, step + 1, optimizer)
        progress.close()

    # -- checkpoints ------------------------------------------------------------------------------
    def checkpoint(self, stage: int, step: int, optimizer) -> None:
        if self.dist:  # every rank gathers (collectives), rank 0 writes, all wait for the file
            connector, optim = (
                dd.full_state(self.connector.state_dict()),
                dd.full_optimizer_state(optimizer.state_dict()),
            )
            lm_trainable = {n: dd.full(p) for n, p in self.model.named_parameters() if p.requires_grad}
        else:
            connector, optim = self.connector.state_dict(), optimizer.state_dict()
            lm_trainable = trainable_state(self.model)
        # after the demo LM's stage 0 its weights are no longer the seeded build: a stage-1 checkpoint (LM frozen,
        # nothing of it trainable) must still carry them (one process only: stage 0 is refused under torchrun)
        lm_full = None
        if not self.dist and text_pretraining(self.rg) and stage >= 1:
            lm_full = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        head = None
        if self.label_head is not None:
            head = dd.full_state(self.label_head.state_dict()) if self.dist else self.label_head.state_dict()
        if self.rank == 0:
            save_checkpoint(
                self.out / CHECKPOINT,
                {
                    "fingerprint": self.fingerprint,
                    "stage": stage,
                    "step": step,
                    "connector": connector,
                    "label_head": head,
                    "lm_trainable": lm_trainable,
                    "lm_full": lm_full,
                    "optimizer": optim,
                    "rng": rng_state(),
                    "rows": list(self.rows),
                },
            )
        self.barrier()

    def barrier(self) -> None:
        if self.dist:
            torch.distributed.barrier()

    def _resume_state(self) -> dict | None:
        path = self.out / CHECKPOINT
        if not path.is_file():
            return None
        state = load_checkpoint(path)
        if state.get("fingerprint") != self.fingerprint:
            log.warning("%s was written with another configuration; starting over", path)
            return None
        return state

    def restore(self, state: dict, optimizer) -> None:
        if self.dist:
            own = set(self.connector.state_dict())
            if own != set(state["connector"]):
                raise ValueError(
                    f"checkpoint connector differs from the model's: {sorted(own ^ set(state['connector']))[:3]}"
                )
            dd.load_full(self.connector, state["connector"])
            trainable = {n for n, p in self.model.named_parameters() if p.requires_grad}
            if trainable != set(state["lm_trainable"]):
                raise ValueError(
                    "checkpoint does not match the model's trainable parameters "
                    f"(differing {sorted(trainable ^ set(state['lm_trainable']))[:3]})"
                )
            dd.load_full(self.model, state["lm_trainable"])
            params = [p for g in optimizer.param_groups for p in g["params"]]
            optimizer.load_state_dict(dd.shard_optimizer_state(state["optimizer"], params))
        else:
            self.connector.load_state_dict(state["connector"], strict=True)
            if state.get("lm_full") is not None:
                self.model.load_state_dict(state["lm_full"], strict=True)
            load_trainable(self.model, state["lm_trainable"])
            optimizer.load_state_dict(state["optimizer"])
        if self.label_head is not None:
            if self.dist:
                dd.load_full(self.label_head, state["label_head"])
            else:
                self.label_head.load_state_dict(state["label_head"], strict=True)
        set_rng_state(state["rng"])
        self.rows = list(state["rows"])

    def export(self) -> None:
        model = self.model
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        lm_state = dd.full_state(model.state_dict()) if self.dist else None  # gathered by every rank
        connector = dd.full_state(self.connector.state_dict()) if self.dist else self.connector.state_dict()
        if self.rank == 0:
            with atomic_dir(self.out / LM_DIR) as lm_tmp:  # a kill while saving never leaves a half-written lm/
                model.save_pretrained(lm_tmp, state_dict=lm_state)
                self.tokenizer.save_pretrained(lm_tmp)
            write_csv(
                self.out / "metrics.csv", pd.DataFrame(self.rows, columns=["stage", "step", "loss", "lr", "seconds"])
            )
            write_csv(self.out / "curated.csv", pd.DataFrame({"study_id": self.curated}))
            with atomic_path(self.out / CONNECTOR) as tmp:
                torch.save(
                    {
                        "format": "neurovfm-reportgen-connector",
                        "version": 1,
                        "dim_in": self.studies.dim,
                        "llm_dim": int(model.config.hidden_size),
                        "perceiver": dict(self.rg["perceiver"]),
                        "state_dict": {k: v.cpu() for k, v in connector.items()},
                    },
                    tmp,
                )
            log.info("report generator written to %s", self.out)
        self.barrier()
