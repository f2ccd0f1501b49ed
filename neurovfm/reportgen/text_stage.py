"""The demo LM's text-only stage 0 as a job of its own, shared by every curated size.

Stage 0 (``reportgen.lm.text_pretrain``) trains the tiny demo LM on the findings of every reported training study
before the connector sees an image. It reads no image feature and is the same for every curated size, so one job
trains it, from the preprocessed shards' index, while the encoders are still pretraining; each size's training run
(:class:`.train.Trainer`, ``text_stage``) then loads its weights, RNG state and loss rows instead of training it
again. The run compares fingerprints first (settings, seed, device type, the studies and their texts, the
vocabulary: :meth:`.train.Trainer.text_fingerprint`) and trains stage 0 itself when they differ, so the result is
always that of a run without this job. With a local LM (``lm.path``) or ``text_pretrain.steps: 0`` there is no
stage 0 and the file says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

from neurovfm.jepa.checkpoint import load as load_checkpoint
from neurovfm.jepa.checkpoint import rng_state, save as save_checkpoint

from .data import ShardStudies, load_findings, load_indications
from .train import Trainer, text_pretraining

log = logging.getLogger("neurovfm")
FORMAT, VERSION = "neurovfm-reportgen-text-stage", 1


def train_text_stage(cfg: dict, shard_index, findings_jsonl, reports_jsonl, out_path) -> dict:
    """Train stage 0 on the reported training studies that have a series in the shards (:class:`.data.ShardStudies`)
    and write ``out_path`` (atomically): the LM's weights, the RNG state after the stage, its loss rows."""
    rg = cfg["reportgen"]
    if not text_pretraining(rg):
        state = {"format": FORMAT, "version": VERSION, "enabled": False}
        log.info("no text-only stage (a local LM, or lm.text_pretrain.steps 0)")
    else:
        trainer = Trainer(
            cfg,
            ShardStudies(shard_index, rg),
            load_findings(findings_jsonl),
            load_indications(reports_jsonl),
            [],
            Path(out_path).parent,
            text_only=True,
        )
        log.info("text-only stage: %d reported training studies", len(trainer.pool))
        trainer.run_text_stage()
        state = {
            "format": FORMAT,
            "version": VERSION,
            "enabled": True,
            "fingerprint": trainer.fingerprint,
            "lm": {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()},
            "rng": rng_state(),
            "rows": list(trainer.rows),
        }
    save_checkpoint(out_path, state)
    return state


def load_text_stage(path) -> dict:
    """The file :func:`train_text_stage` wrote; a file of another kind is refused in one line."""
    state = load_checkpoint(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{Path(path).name} is not a text-stage file of the report generator")
    if int(state.get("version", -1)) != VERSION:
        raise ValueError(f"{Path(path).name}: text-stage version {state.get('version')}, expected {VERSION}")
    return state
