"""Cross-validated pooled-feature check (neurovfm.probes.pooled_cv): pooling, signal vs noise, fold hygiene."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from neurovfm.probes.pooled_cv import cv_mean_auroc, fit_and_score, pooled_matrix, pooled_vector


class _Bags:
    """The two members of a BagSet that pooling reads."""

    def __init__(self, bags, labels):
        self._bags, self.labels = bags, np.asarray(labels)

    def __len__(self):
        return len(self._bags)

    def bag(self, i):
        return self._bags[i]


def _studies(n, seed, signal=True):
    """Each study 30-60 tokens of noise; class 0 positives have 3 tokens shifted along dimension 0 (a small
    lesion: invisible in the mean, visible in the upper tail); class 1 is label noise."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 2)) < 0.4).astype(int)
    bags = []
    for i in range(n):
        t = rng.normal(size=(int(rng.integers(30, 60)), 6)).astype(np.float32)
        if signal and y[i, 0]:
            t[:3, 0] += 4.0
        bags.append(t)
    return bags, y


def test_pooled_vector_is_mean_then_percentiles():
    t = np.arange(12, dtype=np.float32).reshape(6, 2)
    v = pooled_vector(t, percentiles=(0.0, 100.0))
    np.testing.assert_allclose(v, [5, 6, 0, 1, 10, 11])
    with pytest.raises(ValueError, match="non-empty"):
        pooled_vector(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        pooled_vector(np.array([[np.nan, 1.0]]))


def test_planted_tail_signal_is_found_and_noise_class_is_chance():
    bags, y = _studies(120, 0)
    x, labels = pooled_matrix([_Bags(bags[:80], y[:80]), _Bags(bags[80:], y[80:])])
    assert x.shape == (120, 18) and (labels == y).all()
    res = cv_mean_auroc(x, labels[:, :1], repeats=2)
    assert res["mean_auroc"] > 0.85 and res["classes"] == [0]
    noise = cv_mean_auroc(x, labels[:, 1:], repeats=2)
    assert 0.3 < noise["mean_auroc"] < 0.7


def test_held_out_scores_come_from_probes_that_never_saw_them():
    """Pure-noise features with labels that a memorising probe would fit: out-of-fold AUROC stays near chance,
    while the in-sample AUROC of the same probe is high (so a leak would show)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 300))
    y = (rng.random((80, 1)) < 0.5).astype(int)
    res = cv_mean_auroc(x, y, c=10.0, repeats=3)
    assert abs(res["mean_auroc"] - 0.5) < 0.15
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=10.0, max_iter=2000).fit(x, y[:, 0])
    assert roc_auc_score(y[:, 0], fit.decision_function(x)) > 0.99


def test_rare_classes_are_skipped_and_nothing_left_raises():
    bags, y = _studies(60, 2)
    x, _ = pooled_matrix([_Bags(bags, y)])
    y = y.copy()
    y[:, 1] = 0
    y[:3, 1] = 1  # three positives: below min_pos
    assert cv_mean_auroc(x, y, min_pos=8, repeats=1)["classes"] == [0]
    with pytest.raises(ValueError, match="nothing to cross-validate"):
        cv_mean_auroc(x, y[:, 1:], min_pos=8)


@pytest.mark.parametrize("n_cols", [1, 3])
def test_folds_partition_the_studies(n_cols):
    from neurovfm.probes.pooled_cv import stratified_folds

    y = (np.random.default_rng(3).random((50, n_cols)) < 0.3).astype(int)
    folds = stratified_folds(y, 5, seed=0)
    held = np.concatenate([h for _, h in folds])
    assert len(folds) == 5 and sorted(held) == list(range(50))
    assert all(not set(t) & set(h) and len(t) + len(h) == 50 for t, h in folds)


def test_fit_and_score_finds_a_planted_signal_in_new_studies_only_for_that_class():
    bags, y = _studies(160, 3)
    x, labels = pooled_matrix([_Bags(bags, y)])
    s = fit_and_score(x[:100], labels[:100], x[100:], classes=[0, 1])
    assert s.shape == (60, 2)
    assert roc_auc_score(labels[100:, 0], s[:, 0]) > 0.85  # the planted lesion class
    assert 0.25 < roc_auc_score(labels[100:, 1], s[:, 1]) < 0.75  # label noise stays near chance
