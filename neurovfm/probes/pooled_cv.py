"""A low-variance check of frozen features for choosing pretraining settings: pooled features, linear probes,
cross-validation over the development studies (train + validation; the test split is never passed in).

Why: the demo holds out about 20 validation studies per modality, so the attentive probe's validation AUROC moves
by several hundredths between runs that differ only in noise (docs/diagnosis.md). Every development study
serves here once as held-out data, over several fold draws, and the probe is cheap enough to refit per class.

Study vector: per-dimension mean and upper / lower percentiles of the study's tokens (a lesion occupies a few
tokens, so the tails carry it). Per class with enough positives: standardisation + class-weighted L2 logistic
regression (scikit-learn); folds from iterative multi-label stratification. Score: mean over classes of the
out-of-fold AUROC, averaged over the fold draws.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def pooled_vector(tokens: np.ndarray, percentiles=(1.0, 99.0)) -> np.ndarray:
    """[n_tokens, D] -> [D * (1 + len(percentiles))]: mean, then each percentile, per dimension."""
    t = np.asarray(tokens, dtype=np.float32)
    if t.ndim != 2 or t.shape[0] == 0:
        raise ValueError(f"a study needs a non-empty [n_tokens, dim] bag, got shape {t.shape}")
    if not np.isfinite(t).all():
        raise ValueError("non-finite token features")
    parts = [t.mean(axis=0)] + [np.percentile(t, q, axis=0) for q in percentiles]
    return np.concatenate(parts).astype(np.float64)


def pooled_matrix(bagsets, percentiles=(1.0, 99.0)) -> tuple[np.ndarray, np.ndarray]:
    """Study vectors and labels of the studies of several :class:`~neurovfm.probes.bags.BagSet` (same classes)."""
    xs, ys = [], []
    for bags in bagsets:
        xs.extend(pooled_vector(bags.bag(i), percentiles) for i in range(len(bags)))
        ys.append(np.asarray(bags.labels))
    if not xs:
        raise ValueError("no studies to pool")
    return np.stack(xs), np.concatenate(ys).astype(int)


def stratified_folds(y: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, held-out) index pairs: iterative multi-label stratification over the columns of ``y``; with one
    column, plain stratified folds (the iterative method needs two or more)."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold  # noqa: PLC0415 (optional at import)
    from sklearn.model_selection import StratifiedKFold  # noqa: PLC0415

    y = np.asarray(y).astype(int)
    y = y[:, None] if y.ndim == 1 else y
    if y.shape[1] > 1:
        folds = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        return list(folds.split(np.zeros(len(y)), y))
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(folds.split(np.zeros(len(y)), y[:, 0]))


def cv_mean_auroc(
    x: np.ndarray, y: np.ndarray, min_pos: int = 8, n_folds: int = 5, repeats: int = 3, c: float = 0.01, seed: int = 0
) -> dict:
    """Mean out-of-fold AUROC over the classes with at least ``min_pos`` positives and negatives.

    Returns ``{"mean_auroc", "per_repeat", "classes", "scores"}`` (``classes``: indices scored; ``scores``
    [n, len(classes)]: out-of-fold decision values averaged over the draws, for paired bootstraps). Folds are drawn
    ``repeats`` times (seeds ``seed``, ``seed + 1``, ...); every class's probe is fitted on the training folds only.
    """
    y = np.asarray(y).astype(int)
    n_pos = y.sum(axis=0)
    classes = np.where((n_pos >= min_pos) & (len(y) - n_pos >= min_pos))[0]
    if len(classes) == 0:
        raise ValueError(f"no class has {min_pos} positives and negatives: nothing to cross-validate")
    if len(y) < n_folds * 2:
        raise ValueError(f"{len(y)} studies are too few for {n_folds} folds")
    per_repeat, summed = [], np.zeros((len(y), len(classes)))
    for r in range(repeats):
        scores = np.zeros((len(y), len(classes)))
        for train, held in stratified_folds(y[:, classes], n_folds, seed + r):
            for k, j in enumerate(classes):
                if y[train, j].min() == y[train, j].max():  # a fold without both labels: an uninformative score
                    continue
                model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, class_weight="balanced"))
                model.fit(x[train], y[train, j])
                scores[held, k] = model.decision_function(x[held])
        per_repeat.append(float(np.mean([roc_auc_score(y[:, j], scores[:, k]) for k, j in enumerate(classes)])))
        summed += scores
    return {
        "mean_auroc": float(np.mean(per_repeat)),
        "per_repeat": per_repeat,
        "classes": classes.tolist(),
        "scores": summed / repeats,
    }


def fit_and_score(x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, classes, c: float = 0.01) -> np.ndarray:
    """Decision values [n_test, len(classes)] of the same per-class probes as :func:`cv_mean_auroc`, fitted once
    on every development study (``x_fit``, ``y_fit``): the one look at held-out test studies after a choice made
    by cross-validation."""
    y_fit = np.asarray(y_fit).astype(int)
    out = np.zeros((len(x_test), len(classes)))
    for k, j in enumerate(classes):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, class_weight="balanced"))
        model.fit(x_fit, y_fit[:, j])
        out[:, k] = model.decision_function(x_test)
    return out
