"""Per-class diagnostic metrics (no resampling).

* :func:`auroc` -- Mann-Whitney AUROC with ties at average rank (identical to
  ``sklearn.metrics.roc_auc_score`` for binary labels), optional non-negative sample weights
  (integer weights give exactly the AUROC of the explicitly repeated sample).
* :func:`threshold_metrics` -- sensitivity, specificity and balanced accuracy of the rule
  ``score >= threshold`` (optionally weighted).
* :func:`class_status` -- eligibility of a class in an evaluation set: a class with fewer than
  ``min_pos`` positives (or negatives) is reported with a status string and NaN metrics, never dropped.
* :func:`per_class_metrics` -- point estimates for a [n_studies, n_classes] table.

The bootstrap (``neurovfm.eval.bootstrap``) uses its own vectorised engine; these functions are the
plain reference implementation and the one used for quick single-table evaluation.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

STATUS_OK = "ok"
STATUS_FEW_POS = "too_few_positives"
STATUS_FEW_NEG = "too_few_negatives"
DEFAULT_MIN_POS = 10  # paper: subgroup cells need >= 10 positives and negatives


def _as_binary(labels) -> np.ndarray:
    y = np.asarray(labels)
    if y.dtype == bool:
        return y
    if not np.all(np.isin(y, (0, 1))):
        raise ValueError("labels must be binary (0/1 or bool)")
    return y.astype(bool)


def auroc(scores, labels, weights=None) -> float:
    """AUROC = P(score_pos > score_neg) + 0.5 P(tie), weighted by ``weights`` (default 1).

    Returns NaN when the (weighted) positive or negative mass is zero.
    """
    s = np.asarray(scores, dtype=float).ravel()
    y = _as_binary(labels).ravel()
    w = np.ones_like(s) if weights is None else np.asarray(weights, dtype=float).ravel()
    if not (s.shape == y.shape == w.shape):
        raise ValueError("scores, labels and weights must have the same length")
    if np.any(w < 0):
        raise ValueError("weights must be non-negative")
    order = np.argsort(s, kind="mergesort")
    ss, ys, ws = s[order], y[order], w[order]
    # tie groups of equal scores
    start = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])
    pos_w = np.add.reduceat(np.where(ys, ws, 0.0), start) if len(s) else np.zeros(0)
    tot_w = np.add.reduceat(ws, start) if len(s) else np.zeros(0)
    neg_w = tot_w - pos_w
    wp, wn = pos_w.sum(), neg_w.sum()
    if wp <= 0 or wn <= 0:
        return float("nan")
    neg_below = np.cumsum(neg_w) - neg_w
    u = np.sum(pos_w * (neg_below + 0.5 * neg_w))
    return float(u / (wp * wn))


def threshold_metrics(scores, labels, threshold: float, weights=None) -> dict:
    """Sensitivity, specificity, balanced accuracy of predicting positive when ``score >= threshold``."""
    s = np.asarray(scores, dtype=float).ravel()
    y = _as_binary(labels).ravel()
    w = np.ones_like(s) if weights is None else np.asarray(weights, dtype=float).ravel()
    pred = s >= threshold
    wp, wn = w[y].sum(), w[~y].sum()
    tp, tn = w[y & pred].sum(), w[~y & ~pred].sum()
    sens = tp / wp if wp > 0 else float("nan")
    spec = tn / wn if wn > 0 else float("nan")
    return {"sensitivity": float(sens), "specificity": float(spec), "balanced_accuracy": float(0.5 * (sens + spec))}


def class_status(n_pos: int, n_neg: int, min_pos: int = DEFAULT_MIN_POS) -> str:
    """``"ok"`` or why the class is not evaluable (fewer than ``min_pos`` positives / negatives)."""
    if n_pos < min_pos:
        return STATUS_FEW_POS
    if n_neg < min_pos:
        return STATUS_FEW_NEG
    return STATUS_OK


def per_class_metrics(
    scores, labels, thresholds=None, class_names: Sequence[str] | None = None, min_pos: int = DEFAULT_MIN_POS
) -> pd.DataFrame:
    """Point estimates per class for a [n_studies, n_classes] score table.

    Columns: ``label, n_pos, n_neg, status, auroc, balanced_accuracy, sensitivity, specificity,
    threshold``. Classes with status != "ok" keep their row with NaN metrics.
    """
    S = np.asarray(scores, dtype=float)
    Y = np.asarray(labels)
    if S.ndim != 2 or S.shape != Y.shape:
        raise ValueError("scores and labels must both be [n_studies, n_classes]")
    k = S.shape[1]
    names = list(class_names) if class_names is not None else [f"class_{j}" for j in range(k)]
    thr = np.full(k, np.nan) if thresholds is None else np.asarray(thresholds, dtype=float)
    rows = []
    for j in range(k):
        y = _as_binary(Y[:, j])
        n_pos = int(y.sum())
        n_neg = int(len(y) - n_pos)
        st = class_status(n_pos, n_neg, min_pos)
        row = {
            "label": names[j],
            "n_pos": n_pos,
            "n_neg": n_neg,
            "status": st,
            "auroc": np.nan,
            "balanced_accuracy": np.nan,
            "sensitivity": np.nan,
            "specificity": np.nan,
            "threshold": float(thr[j]),
        }
        if st == STATUS_OK:
            row["auroc"] = auroc(S[:, j], y)
            if np.isfinite(thr[j]):
                row.update(threshold_metrics(S[:, j], y, thr[j]))
        rows.append(row)
    return pd.DataFrame(rows)
