"""Per-class metrics and validation-only thresholds (neurovfm.eval.metrics / thresholds)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from neurovfm.eval.bootstrap import _make_plan, _metrics_from_segments, _plan_matrix
from neurovfm.eval.metrics import auroc, class_status, per_class_metrics, threshold_metrics
from neurovfm.eval.thresholds import apply_thresholds, select_thresholds, youden_threshold


def _tied(rng, n, prev=0.3):
    y = rng.random(n) < prev
    y[:2] = [True, False]
    s = np.round(rng.normal(size=n) + y, 1)  # coarse rounding -> many ties, incl. pos/neg ties
    return s, y


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    s, y = _tied(rng, 400)
    assert len(np.unique(s)) < 100
    assert auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_all_tied_scores_give_half():
    y = np.array([0, 1, 0, 1, 1])
    assert auroc(np.zeros(5), y) == pytest.approx(0.5)
    assert np.isnan(auroc(np.arange(4.0), np.zeros(4)))


@pytest.mark.parametrize("seed", range(4))
def test_weighted_auroc_equals_repeated_sample(seed):
    rng = np.random.default_rng(seed)
    s, y = _tied(rng, 200)
    w = rng.integers(0, 4, size=200)
    rep = np.repeat(np.arange(200), w)
    ref = roc_auc_score(y[rep], s[rep])
    assert auroc(s, y, weights=w) == pytest.approx(ref, abs=1e-12)
    # the vectorised bootstrap engine on the same multiplicities
    thr = 0.4
    p = _make_plan(s, y, thr)
    seg = _plan_matrix([p], 200) @ w.astype(np.uint16)[:, None]
    out = _metrics_from_segments(seg, p, np.array([w.sum()]))
    assert out["auroc"][0] == pytest.approx(ref, abs=1e-12)
    tm = threshold_metrics(s[rep], y[rep], thr)
    for k in ("sensitivity", "specificity", "balanced_accuracy"):
        assert out[k][0] == pytest.approx(tm[k], abs=1e-12)
        assert threshold_metrics(s, y, thr, weights=w)[k] == pytest.approx(tm[k], abs=1e-12)


def test_threshold_metrics_definition():
    s = np.array([0.1, 0.4, 0.5, 0.9])
    y = np.array([0, 0, 1, 1])
    m = threshold_metrics(s, y, 0.4)  # predicts 0.4, 0.5, 0.9 positive
    assert m["sensitivity"] == 1.0 and m["specificity"] == 0.5 and m["balanced_accuracy"] == 0.75


def test_youden_matches_brute_force_and_ties_pick_smallest():
    rng = np.random.default_rng(3)
    s, y = _tied(rng, 300)
    t = youden_threshold(s, y)
    cands = np.unique(s)
    j = [y[s >= c].sum() / y.sum() + (~y[s < c]).sum() / (~y).sum() - 1 for c in cands]
    best = np.flatnonzero(np.isclose(j, max(j), rtol=0, atol=1e-12))
    assert t == cands[best[0]]
    # explicit tie: thresholds 0.2 and 0.6 both give J = 0.5 -> the smaller one
    assert youden_threshold([0.1, 0.2, 0.6, 0.8], [0, 1, 0, 1]) == 0.2
    assert np.isnan(youden_threshold([0.1, 0.2], [1, 1]))


def test_threshold_chosen_on_validation_only():
    from neurovfm.eval.bootstrap import evaluate_classes

    rng = np.random.default_rng(0)
    vs = rng.normal(size=(300, 3))
    vy = (vs + rng.normal(size=(300, 3))) > 0.8
    ts = rng.normal(size=(250, 3))
    ty = (ts + rng.normal(size=(250, 3))) > 0.8
    thr = select_thresholds(vs, vy)
    tab1, _ = evaluate_classes(ts, ty, val_scores=vs, val_labels=vy, n_boot=20)
    ty2 = rng.random((250, 3)) < 0.3  # completely different test labels
    tab2, _ = evaluate_classes(ts, ty2, val_scores=vs, val_labels=vy, n_boot=20)
    np.testing.assert_array_equal(tab1["threshold"].to_numpy(), thr)
    np.testing.assert_array_equal(tab2["threshold"].to_numpy(), thr)
    assert not np.allclose(tab1["sensitivity"], tab2["sensitivity"])
    np.testing.assert_array_equal(apply_thresholds(ts, thr), ts >= thr[None, :])


def test_rare_class_status_reported_not_dropped():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(200, 3))
    y = np.zeros((200, 3), bool)
    y[:50, 0] = True  # fine
    y[:3, 1] = True  # 3 positives
    y[:, 2] = True  # no negatives
    y[:5, 2] = False
    df = per_class_metrics(s, y, thresholds=[0.0, 0.0, 0.0], class_names=["a", "b", "c"], min_pos=10)
    assert list(df["label"]) == ["a", "b", "c"]
    assert list(df["status"]) == ["ok", "too_few_positives", "too_few_negatives"]
    assert list(df["n_pos"]) == [50, 3, 195]
    assert df.loc[1:, ["auroc", "sensitivity", "specificity", "balanced_accuracy"]].isna().all().all()
    assert np.isfinite(df.loc[0, "auroc"])
    assert class_status(10, 10, 10) == "ok" and class_status(0, 100, 1) == "too_few_positives"
