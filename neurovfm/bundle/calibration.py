"""Per-class Platt calibration of a probe's logits, fitted on the validation rows of its ``predictions.csv``
(the same fit as the label-efficiency analysis, :func:`neurovfm.analysis.label_efficiency.platt_fit`). A class
without validation positives or negatives keeps the raw probability (``a = 1, b = 0``, ``fitted`` false)."""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ["label", "a", "b", "fitted", "val_n_pos", "val_n_neg"]


def fit_calibration(predictions: pd.DataFrame, class_names: list[str]) -> pd.DataFrame:
    from neurovfm.analysis.label_efficiency import platt_fit

    val = predictions[predictions["split"] == "val"]
    rows = []
    for c in class_names:
        y = val[f"label:{c}"].to_numpy(int)
        n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
        if n_pos and n_neg:
            a, b = platt_fit(val[f"logit:{c}"].to_numpy(float), y)
            rows.append({"label": c, "a": a, "b": b, "fitted": True, "val_n_pos": n_pos, "val_n_neg": n_neg})
        else:
            rows.append({"label": c, "a": 1.0, "b": 0.0, "fitted": False, "val_n_pos": n_pos, "val_n_neg": n_neg})
    return pd.DataFrame(rows, columns=COLUMNS)


def apply_calibration(logits: np.ndarray, table: pd.DataFrame) -> np.ndarray:
    """Calibrated probabilities ``sigmoid(a * logit + b)`` per class ([n, K] or [K])."""
    a, b = table["a"].to_numpy(float), table["b"].to_numpy(float)
    return 1.0 / (1.0 + np.exp(-(a * np.asarray(logits, dtype=float) + b)))
