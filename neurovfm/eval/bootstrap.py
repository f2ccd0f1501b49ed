"""Study-level bootstrap of per-class diagnostic metrics, vectorised over replicates and classes.

Resampling. Replicate ``r`` draws ``n`` study indices with replacement; the canonical stream is
``rng = np.random.default_rng(seed)`` followed by ``rng.integers(0, n, size=n)`` once per replicate,
in replicate order (:func:`bootstrap_indices`). Every class (and both encoders of a paired
comparison) sees the SAME resample in a replicate. A replicate enters the engine only as its
multiplicity vector ``w = bincount(idx, minlength=n)``.

Engine (no loop over replicates x classes). Per class the studies are sorted once by score
(ties: positives first) and cut into contiguous segments so that each tie group containing a
positive starts a segment, its positives form one segment, its negatives the next, and the first
study with ``score >= threshold`` starts a segment. For a chunk of replicates the segment weights of
ALL classes are one sparse [n_segments_total, n] x dense [n, chunk] product (0/1 matrix, integer
counts; split over threads). With P_g the positive weight of tie group g, T_g its total weight and
B_g the total weight strictly below it,

    2 U = sum_g P_g (2 B_g + T_g) - W_pos^2,     AUROC = 2U / (2 W_pos W_neg)

which is the weighted Mann-Whitney statistic with ties at average rank (the ``- W_pos^2`` removes
the positive-positive pairs); all terms are exact integers, so the AUROC equals
``roc_auc_score`` on the explicitly repeated sample up to one float rounding. Sensitivity and
specificity at the validation threshold come from the same segment sums. Replicates where a class
has no resampled positives (or negatives) give NaN for that class and are ignored by the
percentile CI (``nanpercentile``).

CIs are percentile intervals (default 95%: 2.5th and 97.5th percentiles, numpy's linear rule).
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from neurovfm.eval.metrics import DEFAULT_MIN_POS, STATUS_OK, _as_binary, class_status
from neurovfm.eval.thresholds import select_thresholds

METRICS = ("auroc", "balanced_accuracy", "sensitivity", "specificity")
TABLE_COLUMNS = [
    "label",
    "category",
    "n_pos",
    "n_neg",
    "status",
    "auroc",
    "auroc_lo",
    "auroc_hi",
    "balanced_accuracy",
    "balanced_accuracy_lo",
    "balanced_accuracy_hi",
    "sensitivity",
    "sensitivity_lo",
    "sensitivity_hi",
    "specificity",
    "specificity_lo",
    "specificity_hi",
    "threshold",
]


# ----------------------------------------------------------------------------- resampling
def bootstrap_indices(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """The canonical per-replicate study indices (what a naive loop should use)."""
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield rng.integers(0, n, size=n)


def _count_chunks(n: int, n_boot: int, seed: int, chunk: int) -> Iterator[np.ndarray]:
    """Multiplicities of the canonical draws as [n, m] arrays (study-major), m <= chunk replicates."""
    dtype = np.uint16 if n < 2**16 else np.uint32  # every segment sum is <= n
    draws = bootstrap_indices(n, n_boot, seed)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        counts = np.empty((m, n), dtype=dtype)
        for r in range(m):
            counts[r] = np.bincount(next(draws), minlength=n)
        yield np.ascontiguousarray(counts.T)


# ----------------------------------------------------------------------------- per-class plan
@dataclass
class _Plan:
    order: np.ndarray  # study indices sorted by (score asc, positives first)
    bounds: np.ndarray  # segment start positions (strictly increasing, bounds[0] == 0)
    pos_seg: np.ndarray  # [G] segment holding the positives of positive tie group g
    grp_end: np.ndarray  # [G] index (into bounds + [n]) one past the last segment of group g
    above: np.ndarray  # [G] bool: group score >= threshold
    thr_seg: int  # index (into bounds + [n]) of first segment with score >= threshold; -1: none

    @property
    def n_seg(self) -> int:
        return len(self.bounds)


def _make_plan(s: np.ndarray, y: np.ndarray, threshold: float) -> _Plan:
    n = len(s)
    order = np.lexsort((~y, s))  # ascending score; within ties positives first
    ss, ys = s[order], y[order]
    gstart = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])
    gend = np.r_[gstart[1:], n]
    npos = np.add.reduceat(ys.astype(np.int64), gstart)
    has = npos > 0
    ps, pe, pn = gstart[has], gend[has], npos[has]
    cuts = [np.zeros(1, np.int64), ps, ps + pn, pe]
    thr_pos = -1
    if np.isfinite(threshold):
        thr_pos = int(np.searchsorted(ss, threshold, side="left"))
        cuts.append(np.array([thr_pos]))
    bounds = np.unique(np.concatenate(cuts))
    bounds = bounds[bounds < n]
    ext = np.r_[bounds, n]
    return _Plan(
        order=order,
        bounds=bounds,
        pos_seg=np.searchsorted(ext, ps),
        grp_end=np.searchsorted(ext, pe),
        above=ss[ps] >= threshold if thr_pos >= 0 else np.zeros(len(ps), bool),
        thr_seg=int(np.searchsorted(ext, thr_pos)) if thr_pos >= 0 else -1,
    )


def _plan_matrix(plans: Sequence[_Plan], n: int) -> sp.csr_matrix:
    rows, cols, off = [], [], 0
    for p in plans:
        seg = np.searchsorted(p.bounds, np.arange(n), side="right") - 1
        rows.append(seg + off)
        cols.append(p.order)
        off += p.n_seg
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    return sp.csr_matrix((np.ones(len(r), np.uint16), (r, c)), shape=(off, n))


def _metrics_from_segments(S: np.ndarray, p: _Plan, n_total: np.ndarray) -> dict:
    """Per-replicate metrics of one class from its segment weights S [n_seg, m]."""
    below = np.zeros((S.shape[0] + 1, S.shape[1]), dtype=S.dtype)  # sums <= n fit S.dtype
    np.cumsum(S, axis=0, dtype=S.dtype, out=below[1:])
    P = S[p.pos_seg].astype(np.int64)
    Tb = below[p.pos_seg].astype(np.int64)
    Tg = below[p.grp_end].astype(np.int64) - Tb
    wp = P.sum(axis=0)
    wn = n_total - wp
    two_u = (P * (2 * Tb + Tg)).sum(axis=0) - wp * wp
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {"auroc": np.where((wp > 0) & (wn > 0), two_u / (2.0 * wp * wn), np.nan)}
        if p.thr_seg >= 0:
            tp = P[p.above].sum(axis=0)
            fp = (n_total - below[p.thr_seg].astype(np.int64)) - tp
            sens = np.where(wp > 0, tp / wp, np.nan)
            spec = np.where(wn > 0, (wn - fp) / wn, np.nan)
        else:
            sens = spec = np.full(S.shape[1], np.nan)
    out["sensitivity"], out["specificity"] = sens, spec
    out["balanced_accuracy"] = 0.5 * (sens + spec)
    return out


# ----------------------------------------------------------------------------- engine
@dataclass
class BootstrapResult:
    """Point estimates ``point[metric]`` [K] and replicates ``reps[metric]`` [R, K] per class."""

    class_names: list
    n_pos: np.ndarray
    n_neg: np.ndarray
    status: list
    thresholds: np.ndarray
    point: dict
    reps: dict
    n_boot: int
    seed: int
    alpha: float = 0.05
    extra: dict = field(default_factory=dict)

    def ci(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        return percentile_ci(self.reps[metric], self.alpha)


def percentile_ci(reps: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column of [R, K] replicates, ignoring NaN replicates."""
    reps = np.asarray(reps, dtype=float)
    out_shape = reps.shape[1:]
    lo, hi = np.full(out_shape, np.nan), np.full(out_shape, np.nan)
    ok = np.any(np.isfinite(reps), axis=0)
    if np.any(ok):
        q = np.nanpercentile(reps[:, ok], [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
        lo[ok], hi[ok] = q[0], q[1]
    return lo, hi


def _n_jobs(n_jobs: int | None) -> int:
    return max(1, n_jobs if n_jobs else min(4, os.cpu_count() or 1))


def bootstrap_metrics(
    scores,
    labels,
    thresholds=None,
    n_boot: int = 10_000,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    min_pos: int = DEFAULT_MIN_POS,
    chunk: int = 128,
    n_jobs: int | None = None,
    alpha: float = 0.05,
) -> BootstrapResult:
    """Study-level bootstrap of AUROC (and thresholded metrics when ``thresholds`` is given).

    ``scores``/``labels``: [n_studies, n_classes]; ``thresholds``: [n_classes] (NaN: none).
    Classes whose status is not "ok" (fewer than ``min_pos`` positives or negatives) are not
    resampled: NaN point estimates and replicates. Memory is bounded by ``chunk`` replicates.
    """
    S = np.asarray(scores, dtype=float)
    Y = np.asarray(labels)
    if S.ndim != 2 or S.shape != Y.shape:
        raise ValueError("scores and labels must both be [n_studies, n_classes]")
    if not np.all(np.isfinite(S)):
        raise ValueError("scores must be finite")
    n, k = S.shape
    Yb = np.stack([_as_binary(Y[:, j]) for j in range(k)], axis=1) if k else Y.astype(bool)
    thr = np.full(k, np.nan) if thresholds is None else np.asarray(thresholds, dtype=float).ravel()
    names = list(class_names) if class_names is not None else [f"class_{j}" for j in range(k)]
    n_pos = Yb.sum(axis=0).astype(int)
    n_neg = n - n_pos
    status = [class_status(int(a), int(b), min_pos) for a, b in zip(n_pos, n_neg)]
    active = [j for j in range(k) if status[j] == STATUS_OK]
    plans = [_make_plan(S[:, j], Yb[:, j], thr[j]) for j in active]

    point = {m: np.full(k, np.nan) for m in METRICS}
    reps = {m: np.full((n_boot, k), np.nan) for m in METRICS}
    if not active:
        return BootstrapResult(names, n_pos, n_neg, status, thr, point, reps, n_boot, seed, alpha)

    # split the classes into contiguous blocks (one sparse product per block, run in threads)
    jobs = min(_n_jobs(n_jobs), len(plans))
    blocks = [b for b in np.array_split(np.arange(len(plans)), jobs) if len(b)]
    mats = [_plan_matrix([plans[i] for i in b], n) for b in blocks]
    offs = [np.r_[0, np.cumsum([plans[i].n_seg for i in b])] for b in blocks]

    def run_block(bi: int, counts: np.ndarray, n_total: np.ndarray) -> list:
        seg = mats[bi] @ counts
        res = []
        for t, i in enumerate(blocks[bi]):
            res.append(_metrics_from_segments(seg[offs[bi][t] : offs[bi][t + 1]], plans[i], n_total))
        return res

    def run_all(counts: np.ndarray, pool) -> list:
        n_total = counts.sum(axis=0, dtype=np.int64)
        if pool is None:
            parts = [run_block(bi, counts, n_total) for bi in range(len(blocks))]
        else:
            parts = list(pool.map(lambda bi: run_block(bi, counts, n_total), range(len(blocks))))
        return [r for part in parts for r in part]

    pool = ThreadPoolExecutor(len(blocks)) if len(blocks) > 1 else None
    try:
        ones = np.ones((n, 1), dtype=np.uint16 if n < 2**16 else np.uint32)
        for i, res in enumerate(run_all(ones, None)):
            for m in METRICS:
                point[m][active[i]] = res[m][0]
        for start, counts in _chunked(n, n_boot, seed, chunk):
            m_ = counts.shape[1]
            for i, res in enumerate(run_all(counts, pool)):
                for m in METRICS:
                    reps[m][start : start + m_, active[i]] = res[m]
    finally:
        if pool is not None:
            pool.shutdown()
    return BootstrapResult(names, n_pos, n_neg, status, thr, point, reps, n_boot, seed, alpha)


def _chunked(n, n_boot, seed, chunk):
    start = 0
    for counts in _count_chunks(n, n_boot, seed, chunk):
        yield start, counts
        start += counts.shape[1]


# ----------------------------------------------------------------------------- derived outputs
def paired_auroc_difference(
    scores_a,
    scores_b,
    labels,
    n_boot: int = 10_000,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    min_pos: int = DEFAULT_MIN_POS,
    alpha: float = 0.05,
    chunk: int = 128,
    n_jobs: int | None = None,
    return_replicates: bool = False,
):
    """Delta AUROC = AUROC(a) - AUROC(b) per class, both encoders scored on the SAME resamples.

    Returns a DataFrame ``label, n_pos, n_neg, status, auroc_a, auroc_b, delta, delta_lo, delta_hi``
    (and the [R, K] replicate deltas when ``return_replicates``).
    """
    A, B = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    Y = np.asarray(labels)
    if A.shape != B.shape or A.shape != Y.shape:
        raise ValueError("scores_a, scores_b and labels must have the same shape")
    k = A.shape[1]
    res = bootstrap_metrics(
        np.concatenate([A, B], axis=1),
        np.concatenate([Y, Y], axis=1),
        n_boot=n_boot,
        seed=seed,
        min_pos=min_pos,
        chunk=chunk,
        n_jobs=n_jobs,
    )
    d = res.reps["auroc"][:, :k] - res.reps["auroc"][:, k:]
    lo, hi = percentile_ci(d, alpha)
    names = list(class_names) if class_names is not None else [f"class_{j}" for j in range(k)]
    pa, pb = res.point["auroc"][:k], res.point["auroc"][k:]
    df = pd.DataFrame(
        {
            "label": names,
            "n_pos": res.n_pos[:k],
            "n_neg": res.n_neg[:k],
            "status": res.status[:k],
            "auroc_a": pa,
            "auroc_b": pb,
            "delta": pa - pb,
            "delta_lo": lo,
            "delta_hi": hi,
        }
    )
    return (df, d) if return_replicates else df


def category_means(
    result: BootstrapResult, categories: Mapping[str, Sequence[str]], metric: str = "auroc"
) -> pd.DataFrame:
    """Mean of ``metric`` over the evaluable classes of each category, per replicate, with CIs.

    ``categories``: {category: [class names]}. Classes not in ``result`` raise; classes whose status
    is not "ok" are left out of the mean (counted in ``n_excluded``). NaN replicates of a class
    (no resampled positives) are skipped in that replicate's mean.
    """
    index = {c: j for j, c in enumerate(result.class_names)}
    rows = []
    for cat, members in categories.items():
        missing = [c for c in members if c not in index]
        if missing:
            raise KeyError(f"category {cat!r}: unknown classes {missing}")
        cols = [index[c] for c in members if result.status[index[c]] == STATUS_OK]
        row = {
            "category": cat,
            "n_classes": len(cols),
            "n_excluded": len(members) - len(cols),
            metric: np.nan,
            f"{metric}_lo": np.nan,
            f"{metric}_hi": np.nan,
        }
        if cols:
            with warnings.catch_warnings():  # all-NaN replicate rows -> NaN, silently
                warnings.simplefilter("ignore", RuntimeWarning)
                per_rep = np.nanmean(result.reps[metric][:, cols], axis=1)
            lo, hi = percentile_ci(per_rep[:, None], result.alpha)
            row.update(
                {
                    metric: float(np.nanmean(result.point[metric][cols])),
                    f"{metric}_lo": float(lo[0]),
                    f"{metric}_hi": float(hi[0]),
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)


def per_class_table(result: BootstrapResult, categories: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """The per-class output table (columns ``TABLE_COLUMNS``) of a :class:`BootstrapResult`."""
    cat_of = {}
    for cat, members in (categories or {}).items():
        for c in members:
            cat_of[c] = cat
    data = {
        "label": result.class_names,
        "category": [cat_of.get(c, "") for c in result.class_names],
        "n_pos": result.n_pos.astype(int),
        "n_neg": result.n_neg.astype(int),
        "status": result.status,
    }
    for m in METRICS:
        lo, hi = result.ci(m)
        data[m], data[f"{m}_lo"], data[f"{m}_hi"] = result.point[m], lo, hi
    data["threshold"] = result.thresholds
    return pd.DataFrame(data)[TABLE_COLUMNS]


def evaluate_classes(
    test_scores,
    test_labels,
    val_scores=None,
    val_labels=None,
    thresholds=None,
    class_names: Sequence[str] | None = None,
    categories: Mapping[str, Sequence[str]] | None = None,
    n_boot: int = 10_000,
    seed: int = 0,
    min_pos: int = DEFAULT_MIN_POS,
    alpha: float = 0.05,
    chunk: int = 128,
    n_jobs: int | None = None,
) -> tuple[pd.DataFrame, BootstrapResult]:
    """Thresholds from validation (Youden, unless ``thresholds`` is given), bootstrap on test,
    and the per-class table. Returns ``(table, result)``."""
    if thresholds is None and val_scores is not None:
        thresholds = select_thresholds(val_scores, val_labels)
    res = bootstrap_metrics(
        test_scores,
        test_labels,
        thresholds=thresholds,
        n_boot=n_boot,
        seed=seed,
        class_names=class_names,
        min_pos=min_pos,
        chunk=chunk,
        n_jobs=n_jobs,
        alpha=alpha,
    )
    return per_class_table(res, categories), res
