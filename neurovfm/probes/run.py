"""One probe job: (encoder, modality) -> ``results/{run}/probes/{encoder}/{modality}/``.

Order matters and is the guarantee that no test information reaches training or thresholds: train and validation
bags are loaded, the grid is fitted and chosen, thresholds are chosen on validation probabilities, the probe is
saved -- and only then is the test split opened and predicted.

Files written (each atomically):

- ``probe.pt`` -- :func:`neurovfm.probes.checkpoint.save_probe`;
- ``selection.csv`` -- one row per grid candidate (values, best epoch, validation mean AUROC and loss, chosen; with
  ``selection: cv`` also its cross-validated mean AUROC);
- ``history.csv`` -- per candidate and epoch: learning rate, train and validation loss, validation mean AUROC (with
  ``selection: cv``: the folds' held-out curves, phase ``cv``, then the final train-only fit, phase ``final``);
- ``thresholds.csv`` -- per class: the validation Youden threshold on the probability, validation positives and
  negatives;
- ``predictions.csv`` -- one row per validation and test study: ``study_id``, ``split``, then per class
  ``label:{c}``, ``logit:{c}``, ``prob:{c}``, ``pred:{c}`` (prob >= threshold);
- ``unmatched.csv`` -- labelled studies without any feature entry (reason ``no_features``), so none is lost;
- ``attention.npz`` -- attention maps of the configured studies (:mod:`neurovfm.probes.attention`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from neurovfm.eval.thresholds import select_thresholds
from neurovfm.utils.atomic import write_csv

from .attention import write_attention
from .bags import BagSet, load_bagsets, read_label_table
from .checkpoint import save_probe
from .predictions import MODALITIES, laterality_map, prediction_frame, sigmoid
from .train import predict, select_probe

log = logging.getLogger("neurovfm")


def attention_studies(bags: BagSet, lateral: dict[str, dict], max_studies: int | None) -> list[int]:
    """Studies whose maps are kept: those with a lateralised positive finding first, then other positive studies,
    each group in store order, up to ``max_studies`` (None: all positive studies)."""
    names = bags.class_names
    first, rest = [], []
    for i, sid in enumerate(bags.study_ids):
        pos = {names[j] for j in np.flatnonzero(bags.labels[i])}
        if not pos:
            continue
        (first if pos & set(lateral.get(sid, {})) else rest).append(i)
    chosen = first + rest
    return chosen if max_studies is None else chosen[:max_studies]


def run_probe(cfg: dict, encoder: str, modality: str, feature_dir, labels_csv, out_dir, findings_jsonl=None) -> dict:
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {sorted(MODALITIES)}, got {modality!r}")
    settings = cfg["probes"]
    seed = int(settings["seed"] if settings["seed"] is not None else cfg["seed"])
    out = Path(out_dir)
    labels, names = read_label_table(labels_csv, MODALITIES[modality])
    windows = settings["ct_windows"]
    dev = load_bagsets(
        feature_dir,
        labels,
        names,
        MODALITIES[modality],
        splits=("train", "val"),
        windows=windows,
        cache=settings["cache_bags"],
    )
    train, val = dev["train"], dev["val"]
    log.info(
        "%s %s probe: %d train / %d val studies (%d / %d tokens)",
        encoder,
        modality,
        len(train),
        len(val),
        int(train.n_tokens.sum()),
        int(val.n_tokens.sum()),
    )

    fit, rows, history = select_probe(train, val, settings, seed)
    val_logits = predict(fit.model, val, settings["eval_max_tokens"])
    thresholds = select_thresholds(sigmoid(val_logits), val.labels)
    save_probe(
        out / "probe.pt",
        fit.model,
        {
            "kind": settings["kind"],
            "dim": train.dim,
            "class_names": names,
            "hidden": settings["hidden"],
            "attn_hidden": settings["attn_hidden"],
            "hparams": fit.hparams,
            "best_epoch": fit.best_epoch,
            "thresholds": thresholds.tolist(),
            "encoder": encoder,
            "modality": MODALITIES[modality],
            "ct_windows": list(windows),
            "seed": seed,
        },
    )
    write_csv(out / "selection.csv", pd.DataFrame(rows))
    write_csv(out / "history.csv", pd.DataFrame(history))
    write_csv(
        out / "thresholds.csv",
        pd.DataFrame(
            {
                "label": names,
                "threshold": thresholds,
                "val_n_pos": val.labels.sum(axis=0).astype(int),
                "val_n_neg": (len(val) - val.labels.sum(axis=0)).astype(int),
            }
        ),
    )

    # only now: the test split
    test = load_bagsets(
        feature_dir, labels, names, MODALITIES[modality], splits=("test",), windows=windows, cache_splits=()
    )["test"]
    test_logits = predict(fit.model, test, settings["eval_max_tokens"])
    preds = pd.concat(
        [prediction_frame(val, val_logits, thresholds), prediction_frame(test, test_logits, thresholds)],
        ignore_index=True,
    )
    write_csv(out / "predictions.csv", preds)
    unmatched = [
        {"study_id": s, "split": b.split, "reason": "no_features"} for b in (train, val, test) for s in b.missing
    ]
    write_csv(out / "unmatched.csv", pd.DataFrame(unmatched, columns=["study_id", "split", "reason"]))
    if unmatched:
        log.warning("%d labelled studies have no feature entries (listed in unmatched.csv)", len(unmatched))

    att_split = {"val": val, "test": test}[settings["attention"]["split"]]
    idx = attention_studies(att_split, laterality_map(findings_jsonl), settings["attention"]["max_studies"])
    n_entries = write_attention(out / "attention.npz", fit.model, att_split, idx)
    summary = {
        "encoder": encoder,
        "modality": modality,
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(test),
        "hparams": fit.hparams,
        "best_epoch": fit.best_epoch,
        "val_mean_auroc": fit.val_auroc,
        "attention_studies": len(idx),
        "attention_entries": n_entries,
        "unmatched": len(unmatched),
    }
    log.info("probe done: %s", summary)
    return summary
