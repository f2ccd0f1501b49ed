"""The external-benchmark protocol (paper: Methods "NeuroVFM on External Public Benchmarks",
Extended Data Fig. 13, Supplementary Data Table 4), generic over the probe.

Per dataset:

1. :func:`make_split` -- a held-out test set of ``test_fraction`` of the *subjects* (paper: 20%),
   stratified; 8-fold iterative stratified cross-validation (paper: 8 folds) on the remaining
   subjects. Both steps use the ``iterative-stratification`` package on one row per subject, so a
   subject's studies never straddle test/development nor two folds. Classification is stratified on
   the labels (multi-label as is; a 1-D 0/1 vector as one label; other 1-D class vectors one-hot);
   regression on quantile bins of the subject's mean target.
2. :func:`run_protocol` -- for every hyper-parameter setting of ``grid`` and every fold, the caller's
   ``fit_predict(train_idx, val_idx, test_idx, hparams) -> (val_scores, test_scores)`` trains on the
   fold's training studies; the setting with the best mean validation metric (AUROC macro-averaged
   over classes; MAE for regression) is kept. Only validation scores enter the choice. The 8 fold
   models of that setting are ensembled on the test set by averaging their scores per study.
3. :func:`evaluate_predictions` -- AUROC and balanced accuracy per class (threshold: Youden on the
   pooled out-of-fold validation scores of the chosen setting), or MAE and RMSE for regression, with
   95% subject-level percentile CIs (paper: 10,000 replicates; a drawn subject brings all its studies).
4. :func:`frozen_transfer` -- the fold models fitted on dataset A applied unchanged to all of dataset B
   and ensembled the same way (paper: the ADNI-trained classifier on AIBL and OASIS-1).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from neurovfm.analysis.resample import SubsetAUROC, cluster_count_chunks
from neurovfm.eval.bootstrap import percentile_ci
from neurovfm.eval.metrics import auroc
from neurovfm.eval.thresholds import select_thresholds
from neurovfm.utils.progress import Progress

log = logging.getLogger("neurovfm")

CLASSIFICATION, REGRESSION = "classification", "regression"
METRIC_COLUMNS = ["metric", "label", "value", "lo", "hi", "n_studies", "n_subjects"]

FitPredict = Callable[[np.ndarray, np.ndarray, np.ndarray, dict], tuple]


@dataclass
class Split:
    """Study indices of the held-out test set and of each fold's (train, val) development studies."""

    test: np.ndarray
    folds: list
    subjects: np.ndarray  # subject id of every study


def _check_task(task: str) -> None:
    if task not in (CLASSIFICATION, REGRESSION):
        raise ValueError(f"task must be {CLASSIFICATION!r} or {REGRESSION!r}, got {task!r}")


def _as_matrix(y, task: str) -> np.ndarray:
    """Targets as [n, K]: multi-label 0/1 matrix, a 1-D class vector one-hot, or [n, 1] regression."""
    y = np.asarray(y)
    if task == REGRESSION:
        return y.astype(float).reshape(len(y), -1)
    if y.ndim == 1:
        classes = np.unique(y)
        if set(classes.tolist()) <= {0, 1, False, True}:
            return y.astype(int)[:, None]  # binary: one column
        return (y[:, None] == classes[None, :]).astype(int)
    return y.astype(int)


def stratification_targets(y, subjects, task: str, n_bins: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(unique subjects, [n_subjects, L] 0/1 matrix) that the splitters stratify on.

    Classification: a subject is positive for a label when any of its studies is. Regression: the
    subject's mean target cut into ``n_bins`` quantile bins (one-hot).
    """
    _check_task(task)
    subj, inv = np.unique(np.asarray(subjects), return_inverse=True)
    Y = _as_matrix(y, task)
    if task == CLASSIFICATION:
        M = np.zeros((len(subj), Y.shape[1]), int)
        np.maximum.at(M, inv, Y)
        return subj, M
    sums = np.zeros(len(subj))
    np.add.at(sums, inv, Y[:, 0])
    mean = sums / np.bincount(inv, minlength=len(subj))
    edges = np.unique(np.quantile(mean, np.linspace(0, 1, n_bins + 1)[1:-1]))
    b = np.searchsorted(edges, mean, side="right")
    return subj, (b[:, None] == np.arange(len(edges) + 1)[None, :]).astype(int)


def make_split(
    y,
    subjects,
    task: str = CLASSIFICATION,
    test_fraction: float = 0.2,
    n_folds: int = 8,
    n_bins: int = 5,
    seed: int = 0,
) -> Split:
    """Subject-grouped, iteratively stratified test hold-out and development folds (study indices)."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold, MultilabelStratifiedShuffleSplit

    subjects = np.asarray(subjects)
    subj, M = stratification_targets(y, subjects, task, n_bins)
    if M.shape[1] == 1:  # the splitters need a multi-label matrix: add the complement
        M = np.hstack([M, 1 - M])
    if len(subj) < n_folds + 2:
        raise ValueError(f"{len(subj)} subjects are too few for a test split and {n_folds} folds")
    X = np.zeros((len(subj), 1))
    sss = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)
    dev_s, test_s = next(sss.split(X, M))
    kf = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    study_of = {s: np.flatnonzero(subjects == s) for s in subj}

    def studies(subject_rows) -> np.ndarray:
        return (
            np.sort(np.concatenate([study_of[s] for s in subj[subject_rows]]))
            if len(subject_rows)
            else np.zeros(0, int)
        )

    folds = [(studies(dev_s[tr]), studies(dev_s[va])) for tr, va in kf.split(X[dev_s], M[dev_s])]
    return Split(test=studies(test_s), folds=folds, subjects=subjects)


# ----------------------------------------------------------------------------- metrics
def _as_scores(s, n: int) -> np.ndarray:
    a = np.asarray(s, dtype=float)
    a = a.reshape(n, -1) if a.ndim <= 2 else a
    if a.shape[0] != n or a.ndim != 2:
        raise ValueError(f"fit_predict returned scores of shape {np.shape(s)} for {n} studies")
    return a


def selection_score(scores, y, task: str) -> float:
    """Validation metric used to pick hyper-parameters: macro AUROC (higher is better) or minus MAE."""
    Y = _as_matrix(y, task)
    S = _as_scores(scores, len(Y))
    if task == REGRESSION:
        return -float(np.mean(np.abs(S[:, 0] - Y[:, 0])))
    vals = [auroc(S[:, j], Y[:, j]) for j in range(Y.shape[1])]
    vals = [v for v in vals if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def evaluate_predictions(
    scores,
    y,
    subjects,
    task: str,
    class_names: Sequence[str] | None = None,
    thresholds=None,
    n_boot: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
    chunk: int = 256,
) -> pd.DataFrame:
    """Test metrics with subject-level percentile CIs (columns ``METRIC_COLUMNS``).

    Classification: ``auroc`` per class, and ``balanced_accuracy`` per class when ``thresholds`` [K]
    is given (positive when ``score >= threshold``). Regression: ``mae`` and ``rmse``.
    """
    _check_task(task)
    Y = _as_matrix(y, task)
    S = _as_scores(scores, len(Y))
    subjects = np.asarray(subjects)
    n, k = Y.shape
    names = list(class_names) if class_names is not None else [f"class_{j}" for j in range(k)]
    n_subj = len(np.unique(subjects))
    if task == REGRESSION:
        err = S[:, 0] - Y[:, 0]
        stats = {"mae": (np.abs(err), False), "rmse": (err**2, True)}
        reps = {m: np.empty(n_boot) for m in stats}
        start = 0
        for counts in cluster_count_chunks(subjects, n_boot, seed, chunk):
            tot = counts.sum(axis=0)
            for m, (v, sq) in stats.items():
                r = (v @ counts) / tot
                reps[m][start : start + counts.shape[1]] = np.sqrt(r) if sq else r
            start += counts.shape[1]
        rows = []
        for m, (v, sq) in stats.items():
            lo, hi = percentile_ci(reps[m][:, None], alpha)
            val = float(np.sqrt(v.mean()) if sq else v.mean())
            rows.append(
                {
                    "metric": m,
                    "label": names[0],
                    "value": val,
                    "lo": lo[0],
                    "hi": hi[0],
                    "n_studies": n,
                    "n_subjects": n_subj,
                }
            )
        return pd.DataFrame(rows, columns=METRIC_COLUMNS)

    Yb = Y.astype(bool)
    thr = None if thresholds is None else np.asarray(thresholds, float).ravel()
    engines = [
        SubsetAUROC(S[:, j], Yb[:, j], np.ones((1, n), bool)) if Yb[:, j].any() and (~Yb[:, j]).any() else None
        for j in range(k)
    ]
    au = np.full((n_boot, k), np.nan)
    ba = np.full((n_boot, k), np.nan)
    start = 0
    for counts in cluster_count_chunks(subjects, n_boot, seed, chunk):
        m = counts.shape[1]
        for j, eng in enumerate(engines):
            if eng is None:
                continue
            au[start : start + m, j] = eng(counts)[:, 0]
            if thr is not None:
                pred = S[:, j] >= thr[j]
                wp, wn = Yb[:, j] @ counts, (~Yb[:, j]) @ counts
                with np.errstate(divide="ignore", invalid="ignore"):
                    sens = np.where(wp > 0, (Yb[:, j] & pred) @ counts / wp, np.nan)
                    spec = np.where(wn > 0, (~Yb[:, j] & ~pred) @ counts / wn, np.nan)
                ba[start : start + m, j] = 0.5 * (sens + spec)
        start += m
    rows = []
    au_lo, au_hi = percentile_ci(au, alpha)
    ba_lo, ba_hi = percentile_ci(ba, alpha)
    for j, name in enumerate(names):
        rows.append(
            {
                "metric": "auroc",
                "label": name,
                "value": auroc(S[:, j], Yb[:, j]),
                "lo": au_lo[j],
                "hi": au_hi[j],
                "n_studies": n,
                "n_subjects": n_subj,
            }
        )
        if thr is not None:
            pred = S[:, j] >= thr[j]
            sens = (Yb[:, j] & pred).sum() / max(Yb[:, j].sum(), 1)
            spec = (~Yb[:, j] & ~pred).sum() / max((~Yb[:, j]).sum(), 1)
            rows.append(
                {
                    "metric": "balanced_accuracy",
                    "label": name,
                    "value": 0.5 * (sens + spec),
                    "lo": ba_lo[j],
                    "hi": ba_hi[j],
                    "n_studies": n,
                    "n_subjects": n_subj,
                }
            )
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


# ----------------------------------------------------------------------------- protocol
@dataclass
class ProtocolResult:
    split: Split
    task: str
    class_names: list
    cv: pd.DataFrame  # setting, hparams (JSON), fold, val_score
    best_setting: int
    best_hparams: dict
    fold_test_scores: np.ndarray  # [n_folds, n_test, K] of the chosen setting
    test_scores: np.ndarray  # [n_test, K] ensemble (mean over folds)
    oof_val_scores: np.ndarray  # [n_studies, K]; NaN outside development
    thresholds: np.ndarray | None
    metrics: pd.DataFrame
    extra: dict = field(default_factory=dict)


def run_protocol(
    fit_predict: FitPredict,
    y,
    subjects,
    grid: Sequence[dict],
    task: str = CLASSIFICATION,
    class_names: Sequence[str] | None = None,
    test_fraction: float = 0.2,
    n_folds: int = 8,
    n_bins: int = 5,
    seed: int = 0,
    n_boot: int = 10_000,
    alpha: float = 0.05,
    split: Split | None = None,
    progress_every_s: float = 10.0,
) -> ProtocolResult:
    """The whole protocol for one dataset (see the module docstring). ``y``: [n] or [n, K] targets
    of every study; ``subjects``: [n] subject ids; ``grid``: hyper-parameter settings (dicts) passed
    to ``fit_predict``. ``split`` overrides :func:`make_split` (e.g. a saved split)."""
    _check_task(task)
    if not grid:
        raise ValueError("grid needs at least one hyper-parameter setting")
    Y = _as_matrix(y, task)
    n, k = Y.shape
    names = list(class_names) if class_names is not None else [f"class_{j}" for j in range(k)]
    sp_ = split or make_split(y, subjects, task, test_fraction, n_folds, n_bins, seed)
    test = sp_.test
    rows, fold_tests, oof = [], [], []
    prog = Progress(len(grid) * len(sp_.folds), "external CV", log, every_s=progress_every_s, unit="fits")
    for si, hp in enumerate(grid):
        tests, val_full = [], np.full((n, k), np.nan)
        for fi, (tr, va) in enumerate(sp_.folds):
            vs, ts = fit_predict(tr, va, test, dict(hp))
            vs, ts = _as_scores(vs, len(va)), _as_scores(ts, len(test))
            val_full[va] = vs
            tests.append(ts)
            rows.append(
                {
                    "setting": si,
                    "hparams": json.dumps(hp, sort_keys=True),
                    "fold": fi,
                    "val_score": selection_score(vs, Y[va], task),
                }
            )
            prog.update()
        fold_tests.append(np.stack(tests))
        oof.append(val_full)
    prog.close()
    cv = pd.DataFrame(rows)
    mean = cv.groupby("setting")["val_score"].mean()
    best = int(mean.idxmax())
    ens = fold_tests[best].mean(axis=0)
    dev = np.concatenate([va for _, va in sp_.folds])
    thr = select_thresholds(oof[best][dev], Y[dev]) if task == CLASSIFICATION else None
    metrics = evaluate_predictions(ens, Y[test], sp_.subjects[test], task, names, thr, n_boot, seed, alpha)
    return ProtocolResult(sp_, task, names, cv, best, dict(grid[best]), fold_tests[best], ens, oof[best], thr, metrics)


def frozen_transfer(
    predict_fold: Callable[[int, dict], np.ndarray],
    result: ProtocolResult,
    y_b,
    subjects_b,
    n_boot: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Apply the chosen fold models of ``result`` (dataset A) to every study of dataset B.

    ``predict_fold(fold, hparams)`` returns fold ``fold``'s scores [n_B(, K)] on dataset B (the model
    fitted in ``run_protocol``, kept by the caller). Scores are averaged over folds; thresholds
    (balanced accuracy) are dataset A's. Returns ``(ensemble_scores, metrics)``.
    """
    n_b = len(np.asarray(subjects_b))
    scores = np.stack(
        [_as_scores(predict_fold(f, dict(result.best_hparams)), n_b) for f in range(len(result.split.folds))]
    ).mean(axis=0)
    metrics = evaluate_predictions(
        scores, y_b, subjects_b, result.task, result.class_names, result.thresholds, n_boot, seed, alpha
    )
    return scores, metrics
