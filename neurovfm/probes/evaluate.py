"""Test-set diagnostic tables from a probe's predictions: per class, per category, and between two encoders.

Thresholds are the probe's validation thresholds (``thresholds.csv``), never re-chosen here. Classes with too few
test positives or negatives keep their row with a status and NaN metrics. Category means (and the ``all`` row,
the mean over every evaluable class) are computed per bootstrap replicate, so their intervals are study-level.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from neurovfm.eval.bootstrap import category_means, evaluate_classes, paired_auroc_difference, percentile_ci
from neurovfm.eval.metrics import STATUS_OK
from neurovfm.labels.ontology import load_ontology

from .predictions import MODALITIES, read_predictions, split_arrays

ALL = "all"


def categories(modality: str, names: list[str]) -> dict[str, list[str]]:
    """Ontology categories in first-appearance order, then ``all``."""
    onto = load_ontology(MODALITIES[modality])
    out: dict[str, list[str]] = {}
    for n in names:
        out.setdefault(onto[n].category, []).append(n)
    out[ALL] = list(names)
    return out


def read_thresholds(path: str | Path, names: list[str]) -> np.ndarray:
    t = pd.read_csv(path)
    if list(t["label"]) != names:
        raise ValueError(f"{path}: classes differ from the predictions' classes")
    return t["threshold"].to_numpy(float)


def diagnosis_tables(
    predictions_csv, thresholds_csv, modality: str, n_boot: int, seed: int, min_pos: int, alpha: float = 0.05
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-class table, category table) on the test split."""
    df, names = read_predictions(predictions_csv)
    scores, labels = split_arrays(df, names, "test")
    if len(scores) == 0:
        raise ValueError(f"{predictions_csv} has no test rows")
    thr = read_thresholds(thresholds_csv, names)
    cats = categories(modality, names)
    per_class, res = evaluate_classes(
        scores,
        labels,
        thresholds=thr,
        class_names=names,
        categories={c: m for c, m in cats.items() if c != ALL},
        n_boot=n_boot,
        seed=seed,
        min_pos=min_pos,
        alpha=alpha,
    )
    frames = [category_means(res, cats, metric) for metric in ("auroc", "balanced_accuracy")]
    cat_table = frames[0].merge(
        frames[1][["category", "balanced_accuracy", "balanced_accuracy_lo", "balanced_accuracy_hi"]], on="category"
    )
    cat_table.insert(1, "n_test", len(scores))
    return per_class, cat_table


def _aligned(pred_a, pred_b) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    da, names = read_predictions(pred_a)
    db, names_b = read_predictions(pred_b)
    if names != names_b:
        raise ValueError(f"{pred_a} and {pred_b} predict different classes")
    ta = da[da["split"] == "test"].set_index("study_id")
    tb = db[db["split"] == "test"].set_index("study_id")
    if set(ta.index) != set(tb.index):
        only = sorted(set(ta.index) ^ set(tb.index))
        raise ValueError(
            f"the two encoders' test studies differ ({len(only)} not shared, e.g. {only[:3]}); "
            "a paired comparison needs the same studies"
        )
    tb = tb.loc[ta.index]
    a = ta[[f"prob:{c}" for c in names]].to_numpy(float)
    b = tb[[f"prob:{c}" for c in names]].to_numpy(float)
    y = ta[[f"label:{c}" for c in names]].to_numpy(int)
    return a, b, y, names


def encoder_difference(
    pred_a, pred_b, name_a: str, name_b: str, n_boot: int, seed: int, min_pos: int, alpha: float = 0.05
) -> pd.DataFrame:
    """Per-class AUROC(a) - AUROC(b) on the same test studies and the same resamples, plus an ``all`` row: the
    difference of the mean AUROC over the evaluable classes, with its paired bootstrap interval."""
    a, b, y, names = _aligned(pred_a, pred_b)
    table, reps = paired_auroc_difference(
        a, b, y, n_boot=n_boot, seed=seed, class_names=names, min_pos=min_pos, alpha=alpha, return_replicates=True
    )
    ok = np.flatnonzero(table["status"].to_numpy() == STATUS_OK)
    row = {
        "label": ALL,
        "n_pos": np.nan,
        "n_neg": np.nan,
        "status": STATUS_OK if len(ok) else "no_classes",
        "auroc_a": np.nan,
        "auroc_b": np.nan,
        "delta": np.nan,
        "delta_lo": np.nan,
        "delta_hi": np.nan,
    }
    if len(ok):
        with warnings.catch_warnings():  # a replicate without resampled positives in any class -> NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            per_rep = np.nanmean(reps[:, ok], axis=1)
        lo, hi = percentile_ci(per_rep[:, None], alpha)
        row.update(
            {
                "auroc_a": float(table["auroc_a"].iloc[ok].mean()),
                "auroc_b": float(table["auroc_b"].iloc[ok].mean()),
                "delta_lo": float(lo[0]),
                "delta_hi": float(hi[0]),
            }
        )
        row["delta"] = row["auroc_a"] - row["auroc_b"]
    table["n_classes"] = (table["status"] == STATUS_OK).astype(int)
    row["n_classes"] = int(len(ok))
    table = pd.concat([pd.DataFrame([row]), table], ignore_index=True)
    table.insert(0, "encoder_b", name_b)
    table.insert(0, "encoder_a", name_a)
    return table
