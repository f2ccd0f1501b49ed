"""Small synthetic inputs for the report-generation tests: a feature store, findings, reports and labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from neurovfm.config import default_config
from neurovfm.features import store
from neurovfm.labels.ontology import load_ontology

FINDINGS = {
    "urgent": (["Acute left parietal intraparenchymal hemorrhage."], "intraparenchymal_hemorrhage"),
    "routine": (["Chronic small vessel ischemic disease."], "small_vessel_ischemic_disease"),
    "unremarkable": ([], None),
}


def tiny_config(tmp: Path, **rg) -> dict:
    base = {
        "lm": {
            "tokenizer_vocab": 400,
            # a few steps of the demo LM's text-only stage 0 (one process only: none under torchrun)
            "text_pretrain": {"steps": 0 if "distributed" in rg else 4, "lr": 1e-3, "batch_size": 4},
            "tiny": {
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "num_key_value_heads": 1,
                "head_dim": 16,
                "max_position_embeddings": 1024,
            },
        },
        "perceiver": {"latents": 4, "depth": 1, "heads": 2, "width": 16, "ff_mult": 2},
        "sizes": [8],
        "stage1": {"epochs": 1, "lr": 1e-3, "batch_size": 4},
        "stage2": {"epochs": 1, "lr": 1e-3, "batch_size": 4, "finetune": "full"},
        "checkpoint_every": 1,
        "generation": {"split": "test", "num_beams": 2, "max_new_tokens": 8},
        "eval": {"n_boot": 50, "alpha": 0.05, "seed": 0},
    }
    for k, v in rg.items():
        base[k] = v
    return default_config(reportgen=base)


def make_inputs(tmp: Path, n_per_split: int = 6, dim: int = 8, seed: int = 0) -> dict:
    """Feature stores for train/test, findings.jsonl, reports.jsonl and ct/mri label tables."""
    rng = np.random.default_rng(seed)
    tmp = Path(tmp)
    findings, reports, labels = [], [], {"CT": [], "MR": []}
    paths = {}
    levels = list(FINDINGS)
    for split in ("train", "test"):
        folder = tmp / "features" / split
        folder.mkdir(parents=True)
        entries_meta = []
        with store.ChunkWriter(folder, 0, dim, "fp") as w:
            for k in range(n_per_split):
                sid = f"{split}{k:03d}"
                modality = "CT" if k % 2 == 0 else "MR"
                level = levels[(k // 2) % 3]
                items, label = FINDINGS[level]
                windows = ["brain", "blood", "bone"] if modality == "CT" else ["mri", "mri"]
                for j, win in enumerate(windows):
                    n = int(rng.integers(3, 12))
                    meta = {
                        "series_id": f"{sid}-s{j}",
                        "study_id": sid,
                        "modality": modality,
                        "sequence": "ct" if modality == "CT" else ["t2", "flair"][j],
                        "window": win,
                        "grid": [1, 1, n],
                    }
                    entries_meta.append(
                        w.add(
                            meta,
                            rng.normal(size=(n, dim)).astype(np.float16),
                            np.stack([np.zeros(n), np.zeros(n), np.arange(n)], 1).astype(np.int16),
                        )
                    )
                findings.append(
                    {"study_id": sid, "modality": modality, "split": split, "findings": items, "laterality": {}}
                )
                reports.append(
                    {
                        "study_id": sid,
                        "modality": modality,
                        "indication": "Zebra headache since Tuesday.",
                        "report_text": "FINDINGS: " + (" ".join(items) or "Normal."),
                    }
                )
                labels[modality].append((sid, split, label))
        store.write_index(folder, {"split": split, "encoder": "fake", "dim": dim}, [w.sidecar()])
        paths[split] = folder / "index.json"
    (tmp / "findings.jsonl").write_text("".join(json.dumps(r) + "\n" for r in findings))
    (tmp / "reports.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reports))
    for m, fname in (("CT", "ct.csv"), ("MR", "mri.csv")):
        names = load_ontology(m).names
        rows = [
            {
                "study_id": s,
                "split": sp,
                **{n: int(n == lab or (lab is not None and n in load_ontology(m).ancestors(lab))) for n in names},
            }
            for s, sp, lab in labels[m]
        ]
        pd.DataFrame(rows).to_csv(tmp / fname, index=False)
    return {
        "train": paths["train"],
        "test": paths["test"],
        "findings": tmp / "findings.jsonl",
        "reports": tmp / "reports.jsonl",
        "ct": tmp / "ct.csv",
        "mri": tmp / "mri.csv",
    }


def make_trainer(cfg: dict, paths: dict, out, size: int = 8, **kwargs):
    """A report-generation Trainer on the fixture's train features with ``size`` curated draws (``kwargs`` go to
    the Trainer, e.g. ``text_stage``)."""
    from neurovfm.reportgen.data import StudyTokens, load_findings, load_indications
    from neurovfm.reportgen.run import curated_ids, training_pool
    from neurovfm.reportgen.train import Trainer

    studies = StudyTokens(paths["train"], cfg["reportgen"])
    findings = load_findings(paths["findings"])
    curated = curated_ids(cfg, training_pool(findings, studies), paths["ct"], paths["mri"], size)
    return Trainer(cfg, studies, findings, load_indications(paths["reports"]), curated, out, **kwargs)
