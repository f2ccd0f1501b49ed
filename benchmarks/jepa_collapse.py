"""Representation check of Vol-JEPA pretraining settings, on the train and validation splits only.

For each variant (a name and a JSON override of the config), pretrain the first model of ``pretrain.train`` on the
run's train shards, encode the train and validation splits with its exported encoder (``pretrain.export``: the
student by default), then report per modality
- the effective rank (RankMe, :func:`neurovfm.jepa.loss.effective_rank`) of the training tokens' features (every
  ``--stride``-th token of every training study), a partial-collapse measure;
- unless ``--cv-only``, the validation mean AUROC of the study-level probe chosen exactly as the workflow chooses
  it (``probes.selection``: on validation, or by cross-validation then a train-only fit);
- the cross-validated mean AUROC of linear probes on pooled study features over the train + validation studies
  (:mod:`neurovfm.probes.pooled_cv`, 5 folds x 3 draws): the low-variance score that settings are chosen by,
  since about 20 validation studies per modality move the attentive probe's score by several hundredths;
- with ``--attentive-cv``, the same folds for the workflow's attentive probe (its settings and grid;
  :mod:`neurovfm.probes.attentive_cv`): the best mean held-out curve point over candidates and epochs (optimistic
  by the choice among them, alike for every variant).
The test split is never read.

The variant named ``random`` encodes with seeded random weights (no pretraining): the floor to beat.

    snakemake --profile profiles/local results/demo/shards/train/index.json results/demo/labels/ct.csv \\
        results/demo/labels/mri.csv
    python benchmarks/jepa_collapse.py benchmarks/results/jepa_collapse.csv --work /tmp/jepa_collapse \\
        --variant random '{}' --variant authors '{"pretrain": {"optimizer": {"predictor_lr_scale": 1.0}}}' \\
        --variant demo '{}'
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neurovfm import pipeline
from neurovfm.config import load_config, merged, run_dir, validate
from neurovfm.jepa.loss import effective_rank
from neurovfm.probes.bags import load_bagsets, read_label_table
from neurovfm.probes.attentive_cv import cv_histories, mean_curves
from neurovfm.probes.pooled_cv import cv_mean_auroc, pooled_matrix
from neurovfm.probes.predictions import MODALITIES
from neurovfm.probes.train import select_probe
from neurovfm.utils.atomic import write_csv

log = logging.getLogger("neurovfm")


def feature_rank(bags, stride: int) -> float:
    tokens = np.concatenate([bags.bag(i)[::stride].astype(np.float32) for i in range(len(bags))])
    return float(effective_rank(torch.from_numpy(tokens), max_rows=len(tokens)))


def run_variant(
    cfg: dict,
    name: str,
    work: Path,
    stride: int,
    threads: int,
    skip_attentive: bool = False,
    attentive_cv: bool = False,
) -> dict:
    res, out = run_dir(cfg), work / name
    model = cfg["pretrain"]["train"][0]
    encoder = "random" if name == "random" else model
    t0, reused = time.perf_counter(), (out / "pretrain/encoder.pt").is_file()
    if encoder != "random" and not reused:  # a finished variant is reused (its time is then not known here)
        pipeline.pretrain(
            cfg,
            model,
            res / "shards/train/index.json",
            res / "shards/train/stats.json",
            out / "pretrain",
            threads=threads,
        )
    pretrain_s = time.perf_counter() - t0
    pipeline.features(
        cfg,
        encoder,
        {s: res / f"shards/{s}/index.json" for s in ("train", "val")},
        res / "shards/train/stats.json",
        out / "features",
        encoder_pt=None if encoder == "random" else out / "pretrain/encoder.pt",
        threads=threads,
    )
    row = {"variant": name, "pretrain_s": None if reused else round(pretrain_s, 1)}
    seed = int(cfg["probes"]["seed"] if cfg["probes"]["seed"] is not None else cfg["seed"])
    for mod, modality in MODALITIES.items():
        labels, names = read_label_table(res / f"labels/{mod}.csv", modality)
        bags = load_bagsets(
            out / "features", labels, names, modality, splits=("train", "val"), windows=cfg["probes"]["ct_windows"]
        )
        row[f"erank_{mod}"] = round(feature_rank(bags["train"], stride), 2)
        x, y = pooled_matrix([bags["train"], bags["val"]])
        row[f"cv_auroc_{mod}"] = round(cv_mean_auroc(x, y, seed=seed)["mean_auroc"], 4)
        if attentive_cv:
            best = mean_curves(cv_histories([bags["train"], bags["val"]], cfg["probes"], seed)).iloc[0]
            row[f"cv_attn_auroc_{mod}"] = round(float(best["held_mean_auroc"]), 4)
        if skip_attentive:
            continue
        fit, _, _ = select_probe(bags["train"], bags["val"], cfg["probes"], seed)
        row[f"val_auroc_{mod}"] = round(float(fit.val_auroc), 4)
    log.info("%s", row)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_csv")
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--work", required=True, help="folder for the variants' checkpoints and features")
    ap.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "JSON"), required=True)
    ap.add_argument("--stride", type=int, default=5, help="every n-th training token enters the rank")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cv-only", action="store_true", help="skip the attentive probe's validation fit")
    ap.add_argument(
        "--attentive-cv",
        action="store_true",
        help="also cross-validate the attentive probe (folds x grid fits per modality: minutes)",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    base = load_config(args.config)
    rows = []
    for name, override in args.variant:
        cfg = validate(merged(base, json.loads(override)))
        rows.append(
            {
                **run_variant(cfg, name, Path(args.work), args.stride, args.threads, args.cv_only, args.attentive_cv),
                "override": override,
            }
        )
        write_csv(args.out_csv, pd.DataFrame(rows))
    print(pd.DataFrame(rows).drop(columns="override").to_string(index=False))


if __name__ == "__main__":
    main()
