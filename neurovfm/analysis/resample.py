"""Bootstrap replicates of AUROC restricted to subsets of studies, or under cluster resampling.

The project's study-level bootstrap (:mod:`neurovfm.eval.bootstrap`) resamples whole rows of one
table. Two analyses need a little more, on the *same* engine:

* subgroups (Extended Data Fig. 11): the AUROC of a subgroup and of the full test set computed on
  the same resample of the full test set (a paired bootstrap). A subgroup's AUROC in a replicate is
  the AUROC over the resampled studies that belong to it;
* external benchmarks: subject-level resampling, where a drawn subject brings all its studies.

Both are expressed as multiplicity matrices ``counts`` [n_studies, m] (column r: how often study i
is in replicate r) and per-study masks. The sums that give AUROC come from the engine's segment plans
(``_make_plan`` / ``_metrics_from_segments``), built per subset, so ties and integer weights are
treated exactly as in ``bootstrap_metrics`` (AUROC of the explicitly repeated sample).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import scipy.sparse as sp

from neurovfm.eval.bootstrap import _make_plan, _metrics_from_segments, bootstrap_indices
from neurovfm.eval.metrics import _as_binary


def study_count_chunks(n: int, n_boot: int, seed: int, chunk: int = 256) -> Iterator[np.ndarray]:
    """Study multiplicities [n, m] of the canonical draws (``eval.bootstrap_indices``), m <= chunk."""
    draws = bootstrap_indices(n, n_boot, seed)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        yield np.stack([np.bincount(next(draws), minlength=n) for _ in range(m)], axis=1)


def cluster_count_chunks(groups, n_boot: int, seed: int, chunk: int = 256) -> Iterator[np.ndarray]:
    """Study multiplicities [n_studies, m] when whole clusters (subjects) are resampled.

    ``groups``: the cluster of each study. Replicate r draws ``n_clusters`` cluster indices with
    ``eval.bootstrap_indices(n_clusters, n_boot, seed)`` (clusters numbered in sorted order of their
    ids); every study inherits its cluster's multiplicity.
    """
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    n_clusters = int(inverse.max()) + 1 if len(inverse) else 0
    draws = bootstrap_indices(n_clusters, n_boot, seed)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        cc = np.stack([np.bincount(next(draws), minlength=n_clusters) for _ in range(m)], axis=1)
        yield cc[inverse]


class SubsetAUROC:
    """AUROC of one class on several subsets of studies, for any multiplicity matrix.

    ``masks``: [G, n] bool, one row per subset (e.g. the full set and each subgroup). Subsets without
    both a positive and a negative give NaN throughout.
    """

    def __init__(self, scores, labels, masks):
        s = np.asarray(scores, dtype=float).ravel()
        y = _as_binary(labels).ravel()
        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        if s.shape != y.shape or masks.shape[1] != len(s):
            raise ValueError("scores, labels and masks must agree on the number of studies")
        if not np.all(np.isfinite(s)):
            raise ValueError("scores must be finite")
        self.n, self.masks = len(s), masks
        self.plans, rows, cols, self.offsets = [], [], [], [0]
        for g, mask in enumerate(masks):
            members = np.flatnonzero(mask)
            ok = members.size and y[members].any() and (~y[members]).any()
            plan = _make_plan(s[members], y[members], np.nan) if ok else None
            self.plans.append(plan)
            if plan is not None:
                seg = np.searchsorted(plan.bounds, np.arange(members.size), side="right") - 1
                rows.append(seg + self.offsets[-1])
                cols.append(members[plan.order])
                self.offsets.append(self.offsets[-1] + plan.n_seg)
            else:
                self.offsets.append(self.offsets[-1])
        r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        self.matrix = sp.csr_matrix((np.ones(len(r), np.int64), (r, c)), shape=(self.offsets[-1], self.n))
        self.mask_matrix = sp.csr_matrix(masks.astype(np.int64))

    def __call__(self, counts) -> np.ndarray:
        """AUROC per replicate and subset, [m, G], for study multiplicities ``counts`` [n, m]."""
        counts = np.asarray(counts, dtype=np.int64)
        if counts.ndim == 1:
            counts = counts[:, None]
        seg = self.matrix @ counts
        totals = self.mask_matrix @ counts
        out = np.full((counts.shape[1], len(self.plans)), np.nan)
        for g, plan in enumerate(self.plans):
            if plan is not None:
                res = _metrics_from_segments(seg[self.offsets[g] : self.offsets[g + 1]], plan, totals[g])
                out[:, g] = res["auroc"]
        return out

    def point(self) -> np.ndarray:
        """AUROC of each subset on the original sample, [G]."""
        return self(np.ones((self.n, 1), dtype=np.int64))[0]
