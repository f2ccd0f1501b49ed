"""A probe's predictions table and the helpers that read it, without torch (the small table and figure jobs
import this, not :mod:`neurovfm.probes.run`, and so start about 2 s sooner).

``predictions.csv``: one row per validation and test study: ``study_id``, ``split``, then per class ``label:{c}``,
``logit:{c}``, ``prob:{c}``, ``pred:{c}`` (prob >= threshold).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from neurovfm.eval.thresholds import apply_thresholds
from neurovfm.utils.jsonlines import read_jsonl

MODALITIES = {"ct": "CT", "mri": "MR"}


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def prediction_frame(bags, logits: np.ndarray, thresholds: np.ndarray) -> pd.DataFrame:
    probs = sigmoid(logits)
    preds = apply_thresholds(probs, thresholds)
    cols = {"study_id": bags.study_ids, "split": [bags.split] * len(bags)}
    for j, c in enumerate(bags.class_names):
        cols[f"label:{c}"] = bags.labels[:, j].astype(int)
        cols[f"logit:{c}"] = logits[:, j]
        cols[f"prob:{c}"] = probs[:, j]
        cols[f"pred:{c}"] = preds[:, j].astype(int)
    return pd.DataFrame(cols)


def read_predictions(path: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """``predictions.csv`` and its class names (column order)."""
    df = pd.read_csv(path, dtype={"study_id": str, "split": str})
    names = [c.split(":", 1)[1] for c in df.columns if c.startswith("label:")]
    return df, names


def split_arrays(df: pd.DataFrame, names: list[str], split: str, what: str = "prob") -> tuple[np.ndarray, np.ndarray]:
    """(scores [n, K], labels [n, K]) of one split of a predictions table."""
    d = df[df["split"] == split]
    return d[[f"{what}:{c}" for c in names]].to_numpy(float), d[[f"label:{c}" for c in names]].to_numpy(int)


def laterality_map(findings_jsonl: str | Path | None) -> dict[str, dict]:
    """study_id -> {diagnosis: side} from ``labels/findings.jsonl`` (empty without the file)."""
    if findings_jsonl is None:
        return {}
    return {rec["study_id"]: rec["laterality"] for rec in read_jsonl(findings_jsonl) if rec.get("laterality")}
