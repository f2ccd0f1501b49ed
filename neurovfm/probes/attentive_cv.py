"""Cross-validated learning curves of the study-level attentive probe over the development studies.

The workflow's probe chooses its candidate and epoch on the validation split; with about 20 validation studies per
modality (the demo) that choice picks noise (a spike of one epoch of an erratic candidate). This module fits the
same probe (:func:`neurovfm.probes.train.fit_probe`, same settings and grid) on k - 1 folds of the pooled train +
validation studies and records its held-out mean AUROC per epoch, for every fold and candidate. The mean curve over
folds is a low-variance score of the features (``benchmarks/jepa_collapse.py --attentive-cv``). The test split is
never passed in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .bags import BagSet
from .pooled_cv import stratified_folds
from .train import fit_probe, grid_candidates


class StudySubset(BagSet):
    """Chosen studies of one or more :class:`BagSet` (same classes) behind the BagSet interface that probe fitting
    reads (``bag``, ``pack``, ``token_stats``, ``labels``, ``n_tokens``, ``study_ids``, ``dim``). ``items``:
    (bagset index, study index) pairs. Bags are read from (and cached by) the underlying sets."""

    def __init__(self, bagsets: list[BagSet], items, split: str = "cv"):  # noqa: D107 (no reader of its own)
        if not bagsets:
            raise ValueError("no bag sets to draw studies from")
        names = bagsets[0].class_names
        if any(b.class_names != names for b in bagsets):
            raise ValueError("bag sets with different classes cannot be pooled")
        self._sets, self._items = list(bagsets), [(int(s), int(i)) for s, i in items]
        self.split, self.class_names, self.modality = split, list(names), bagsets[0].modality
        self.study_ids = [self._sets[s].study_ids[i] for s, i in self._items]
        self.labels = np.array([self._sets[s].labels[i] for s, i in self._items], dtype=np.float32).reshape(
            len(self._items), len(names)
        )
        self.n_tokens = np.array([self._sets[s].n_tokens[i] for s, i in self._items], dtype=np.int64)
        self.missing: list[str] = []
        self._dim = bagsets[0].dim
        self.checked_on_read = all(b.checked_on_read for b in bagsets)

    @property
    def dim(self) -> int:
        return self._dim

    def bag(self, i: int) -> np.ndarray:
        s, k = self._items[i]
        return self._sets[s].bag(k)

    def entry_meta(self, i: int) -> list[dict]:
        s, k = self._items[i]
        return self._sets[s].entry_meta(k)


def pooled_items(bagsets: list[BagSet]) -> list[tuple[int, int]]:
    return [(s, i) for s, b in enumerate(bagsets) for i in range(len(b))]


def cv_histories(bagsets: list[BagSet], settings: dict, seed: int, n_folds: int = 5, min_pos: int = 4) -> pd.DataFrame:
    """One row per (candidate, fold, epoch): the grid values and the held-out fold's mean AUROC and loss.

    Folds: iterative stratification over the classes with at least ``min_pos`` positives among the pooled studies;
    inside a fold the probe scores the classes with ``settings['min_val_pos']`` held-out positives and negatives.
    """
    items = pooled_items(bagsets)
    pool = StudySubset(bagsets, items)
    y = pool.labels.astype(int)
    strata = np.where(y.sum(axis=0) >= min_pos)[0]
    if len(strata) == 0:
        raise ValueError(f"no class has {min_pos} positives among {len(pool)} studies: nothing to stratify on")
    rows = []
    for c, hp in enumerate(grid_candidates(settings["grid"])):
        for f, (train, held) in enumerate(stratified_folds(y[:, strata], n_folds, seed)):
            fit = fit_probe(
                StudySubset(bagsets, [items[i] for i in train], "cv_train"),
                StudySubset(bagsets, [items[i] for i in held], "cv_held"),
                settings,
                hp,
                seed,
            )
            rows.extend(
                {
                    "candidate": c,
                    **hp,
                    "fold": f,
                    "epoch": h["epoch"],
                    "held_mean_auroc": h["val_mean_auroc"],
                    "held_loss": h["val_loss"],
                }
                for h in fit.history
            )
    return pd.DataFrame(rows)


def mean_curves(histories: pd.DataFrame) -> pd.DataFrame:
    """Mean held-out AUROC and loss over folds per (candidate, epoch), best first."""
    out = histories.groupby(["candidate", "epoch"], as_index=False)[["held_mean_auroc", "held_loss"]].mean()
    return out.sort_values(["held_mean_auroc", "held_loss"], ascending=[False, True]).reset_index(drop=True)
