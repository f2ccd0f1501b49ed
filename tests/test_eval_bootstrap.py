"""Vectorised study-level bootstrap (neurovfm.eval.bootstrap) against naive loops."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from neurovfm.eval.bootstrap import (
    TABLE_COLUMNS,
    bootstrap_metrics,
    category_means,
    evaluate_classes,
    paired_auroc_difference,
    per_class_table,
    percentile_ci,
)
from neurovfm.eval.metrics import threshold_metrics


def _table(seed=0, n=240, k=4):
    rng = np.random.default_rng(seed)
    prev = np.linspace(0.08, 0.4, k)
    y = rng.random((n, k)) < prev
    y[0], y[1] = True, False
    s = np.round(rng.normal(size=(n, k)) + 1.2 * y, 1)  # ties
    return s, y


def test_replicates_equal_naive_loop_same_seed():
    s, y = _table()
    n, k = s.shape
    thr = np.array([0.2, 0.5, 0.0, 0.7])
    res = bootstrap_metrics(s, y, thresholds=thr, n_boot=60, seed=11, chunk=17, min_pos=1)
    rng = np.random.default_rng(11)  # the documented canonical draw stream
    for r in range(60):
        idx = rng.integers(0, n, size=n)
        for j in range(k):
            yy, ss = y[idx, j], s[idx, j]
            assert res.reps["auroc"][r, j] == pytest.approx(roc_auc_score(yy, ss), abs=1e-12)
            tm = threshold_metrics(ss, yy, thr[j])
            for m in ("sensitivity", "specificity", "balanced_accuracy"):
                assert res.reps[m][r, j] == pytest.approx(tm[m], abs=1e-12)
    for j in range(k):
        assert res.point["auroc"][j] == pytest.approx(roc_auc_score(y[:, j], s[:, j]), abs=1e-12)


def test_chunking_and_threads_do_not_change_results():
    s, y = _table(1)
    a = bootstrap_metrics(s, y, n_boot=50, seed=2, chunk=7, n_jobs=1)
    b = bootstrap_metrics(s, y, n_boot=50, seed=2, chunk=500, n_jobs=3)
    np.testing.assert_array_equal(a.reps["auroc"], b.reps["auroc"])
    c = bootstrap_metrics(s, y, n_boot=50, seed=3)
    assert not np.array_equal(a.reps["auroc"], c.reps["auroc"])


def test_percentile_ci_and_table_columns():
    s, y = _table(2)
    tab, res = evaluate_classes(
        s, y, val_scores=s, val_labels=y, n_boot=200, seed=0, class_names=list("abcd"), categories={"x": ["a", "b"]}
    )
    assert list(tab.columns) == TABLE_COLUMNS
    lo, hi = percentile_ci(res.reps["auroc"])
    np.testing.assert_allclose(tab["auroc_lo"], np.percentile(res.reps["auroc"], 2.5, axis=0))
    np.testing.assert_allclose(tab["auroc_hi"], hi)
    assert (tab["auroc_lo"] <= tab["auroc"]).all() and (tab["auroc"] <= tab["auroc_hi"]).all()
    assert list(tab["category"]) == ["x", "x", "", ""]
    assert tab[["sensitivity_lo", "specificity_hi", "balanced_accuracy"]].notna().all().all()


def test_paired_difference_uses_same_resamples():
    s, y = _table(3)
    rng = np.random.default_rng(5)
    b = s + rng.normal(scale=1.5, size=s.shape)  # a clearly worse encoder
    df, d = paired_auroc_difference(s, b, y, n_boot=300, seed=4, return_replicates=True)
    ra = bootstrap_metrics(s, y, n_boot=300, seed=4)
    rb = bootstrap_metrics(b, y, n_boot=300, seed=4)
    np.testing.assert_allclose(d, ra.reps["auroc"] - rb.reps["auroc"], atol=0)
    lo, hi = percentile_ci(d)
    np.testing.assert_allclose(df["delta_lo"], lo)
    np.testing.assert_allclose(df["delta"], ra.point["auroc"] - rb.point["auroc"])
    assert (df["delta_lo"] > 0).all()  # much better encoder: CI excludes 0
    # identical encoders: every paired delta is exactly zero
    df0 = paired_auroc_difference(s, s.copy(), y, n_boot=50, seed=4)
    assert (df0[["delta", "delta_lo", "delta_hi"]].to_numpy() == 0).all()


def test_category_means_and_rare_classes():
    s, y = _table(4, k=4)
    y[:, 3] = False
    y[:2, 3] = True  # 2 positives -> not evaluable
    res = bootstrap_metrics(s, y, n_boot=100, seed=0, class_names=list("abcd"), min_pos=5)
    assert res.status == ["ok", "ok", "ok", "too_few_positives"]
    assert np.isnan(res.reps["auroc"][:, 3]).all() and np.isnan(res.point["auroc"][3])
    tab = per_class_table(res)
    assert len(tab) == 4 and tab.loc[3, "status"] == "too_few_positives"
    assert tab.loc[3, ["auroc", "auroc_lo", "auroc_hi"]].isna().all()
    cm = category_means(res, {"ab": ["a", "b"], "cd": ["c", "d"]})
    per_rep = res.reps["auroc"][:, :2].mean(axis=1)
    assert cm.loc[0, "auroc"] == pytest.approx(res.point["auroc"][:2].mean())
    assert cm.loc[0, "auroc_lo"] == pytest.approx(np.percentile(per_rep, 2.5))
    assert cm.loc[1, "n_classes"] == 1 and cm.loc[1, "n_excluded"] == 1
    assert cm.loc[1, "auroc"] == pytest.approx(res.point["auroc"][2])
    with pytest.raises(KeyError):
        category_means(res, {"z": ["nope"]})


def test_replicate_without_positives_is_nan():
    y = np.zeros((30, 1), bool)
    y[29] = True  # the single positive has the highest score
    s = np.arange(30.0)[:, None]
    res = bootstrap_metrics(s, y, n_boot=200, seed=0, min_pos=1)
    r = res.reps["auroc"][:, 0]
    assert np.isnan(r).any() and np.isfinite(r).any()  # ~(29/30)^30 of replicates lack the positive
    assert np.all(r[np.isfinite(r)] == 1.0)
