"""Per-class decision thresholds chosen on the VALIDATION set only.

Rule: predict positive when ``score >= t``. The candidate thresholds are the distinct validation
scores; we take the one maximising Youden's J = sensitivity + specificity - 1 on validation, and on
ties (several thresholds with the same maximal J, compared exactly on integer counts) the SMALLEST
threshold. A class whose validation set has no positives or no negatives gets NaN (no threshold).
The test set is never looked at: :func:`apply_thresholds` only consumes the returned numbers.
"""

from __future__ import annotations

import numpy as np

from neurovfm.eval.metrics import _as_binary


def youden_threshold(scores, labels) -> float:
    """Threshold maximising Youden's J on (scores, labels); ties -> smallest threshold."""
    s = np.asarray(scores, dtype=float).ravel()
    y = _as_binary(labels).ravel()
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")  # descending
    ss, ys = s[order], y[order]
    last = np.flatnonzero(np.r_[ss[1:] != ss[:-1], True])  # last index of each tie group
    tp = np.cumsum(ys)[last]
    fp = np.cumsum(~ys)[last]
    # J * n_pos * n_neg = tp * n_neg - fp * n_pos (exact integer comparison)
    j = tp.astype(np.int64) * n_neg - fp.astype(np.int64) * n_pos
    best = np.flatnonzero(j == j.max())
    return float(ss[last[best[-1]]])  # groups are in descending score order -> last = smallest


def select_thresholds(val_scores, val_labels) -> np.ndarray:
    """Per-class Youden thresholds for a [n_val_studies, n_classes] validation table."""
    S = np.asarray(val_scores, dtype=float)
    Y = np.asarray(val_labels)
    if S.ndim != 2 or S.shape != Y.shape:
        raise ValueError("val_scores and val_labels must both be [n_studies, n_classes]")
    return np.array([youden_threshold(S[:, j], Y[:, j]) for j in range(S.shape[1])])


def apply_thresholds(scores, thresholds) -> np.ndarray:
    """Binary predictions ``score >= threshold`` per class (NaN threshold -> all False)."""
    S = np.asarray(scores, dtype=float)
    t = np.asarray(thresholds, dtype=float)
    with np.errstate(invalid="ignore"):
        return S >= t[None, :]
