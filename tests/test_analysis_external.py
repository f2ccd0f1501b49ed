"""External-benchmark protocol: subject-disjoint stratified splits, selection on validation only,
fold ensembling, subject-level CIs against a loop, frozen transfer."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from neurovfm.analysis import external as ex
from neurovfm.eval.bootstrap import bootstrap_indices


def _cohort(seed=0, n_subjects=120, multi=True):
    rng = np.random.default_rng(seed)
    subj_label = (rng.random((n_subjects, 2)) < [0.3, 0.15]).astype(int)
    n_scans = rng.integers(1, 4, n_subjects)
    subjects = np.repeat(np.array([f"s{i:03d}" for i in range(n_subjects)]), n_scans)
    y = np.repeat(subj_label, n_scans, axis=0)
    return (y if multi else y[:, 0]), subjects, rng


def test_split_is_subject_disjoint_and_stratified():
    y, subjects, _ = _cohort()
    sp = ex.make_split(y, subjects, test_fraction=0.2, n_folds=8, seed=1)
    n = len(subjects)
    test_subj = set(subjects[sp.test])
    dev = np.concatenate([va for _, va in sp.folds])
    assert len(dev) == len(set(dev)) and len(dev) + len(sp.test) == n  # every study once
    assert not test_subj & set(subjects[dev])
    n_subj = len(set(subjects))
    assert abs(len(test_subj) - 0.2 * n_subj) <= 2
    fold_subj = [set(subjects[va]) for _, va in sp.folds]
    for i, (tr, va) in enumerate(sp.folds):
        assert not set(subjects[tr]) & set(subjects[va])
        assert not set(tr) & set(sp.test)
        assert sorted(np.r_[tr, va]) == sorted(dev)
        for j in range(i):
            assert not fold_subj[i] & fold_subj[j]
    # label prevalence (per subject) of every part close to the whole
    subj, M = ex.stratification_targets(y, subjects, "classification")
    overall = M.mean(axis=0)
    for part in [sp.test] + [va for _, va in sp.folds]:
        s = np.isin(subj, subjects[part])
        assert np.all(np.abs(M[s].mean(axis=0) - overall) < 0.12)


def test_regression_split_balances_target_bins():
    rng = np.random.default_rng(2)
    subjects = np.repeat([f"s{i}" for i in range(100)], 2)
    age = np.repeat(rng.uniform(20, 90, 100), 2)
    sp = ex.make_split(age, subjects, task="regression", n_bins=4, seed=0)
    assert abs(age[sp.test].mean() - age.mean()) < 6
    assert len(set(subjects[sp.test])) == 20


def test_selection_uses_validation_only_and_ensembles_folds():
    y, subjects, rng = _cohort(seed=3, multi=False)
    n = len(y)
    noise = rng.normal(size=n)
    calls = []

    def fit_predict(train, val, test, hp):
        calls.append((set(train), set(val), set(test)))
        signal = y * hp["w"] + noise
        # setting "leaky" is perfect on test but poor on validation: it must not be chosen
        val_s = signal[val] if not hp["leaky"] else rng.normal(size=len(val))
        test_s = signal[test] + 0.01 * len(train) if not hp["leaky"] else y[test] * 10.0
        return val_s, test_s

    grid = [{"w": 2.0, "leaky": False}, {"w": 0.0, "leaky": False}, {"w": 0.0, "leaky": True}]
    res = ex.run_protocol(fit_predict, y, subjects, grid, n_folds=4, n_boot=50, seed=5)
    assert res.best_hparams == {"w": 2.0, "leaky": False}
    test = set(res.split.test)
    for tr, va, te in calls:
        assert not (tr | va) & test and te == test
    # the ensemble is the mean of the chosen setting's fold scores
    fold_sizes = [len(tr) for tr, _ in res.split.folds]
    expect = (y * 2.0 + noise)[res.split.test] + 0.01 * np.mean(fold_sizes)
    assert np.allclose(res.test_scores[:, 0], expect)
    assert res.fold_test_scores.shape == (4, len(test), 1)
    assert set(res.metrics["metric"]) == {"auroc", "balanced_accuracy"}
    dev = np.concatenate([va for _, va in res.split.folds])
    assert np.isfinite(res.oof_val_scores[dev]).all() and np.isnan(res.oof_val_scores[res.split.test]).all()


def test_classification_cis_against_subject_loop():
    y, subjects, rng = _cohort(seed=4)
    s = rng.normal(size=y.shape) + 1.0 * y
    thr = np.array([0.5, 0.2])
    out = ex.evaluate_predictions(s, y, subjects, "classification", ["a", "b"], thr, n_boot=70, seed=9)
    uniq = np.unique(subjects)
    rows_of = [np.flatnonzero(subjects == u) for u in uniq]
    for j, name in enumerate("ab"):
        aus, bas = [], []
        for idx in bootstrap_indices(len(uniq), 70, 9):
            rows = np.concatenate([rows_of[i] for i in idx])
            yy, ss = y[rows, j], s[rows, j]
            aus.append(roc_auc_score(yy, ss))
            pred = ss >= thr[j]
            bas.append(0.5 * ((pred & (yy == 1)).sum() / (yy == 1).sum() + (~pred & (yy == 0)).sum() / (yy == 0).sum()))
        for metric, reps in (("auroc", aus), ("balanced_accuracy", bas)):
            row = out[(out["metric"] == metric) & (out["label"] == name)].iloc[0]
            lo, hi = np.percentile(reps, [2.5, 97.5])
            assert row["lo"] == pytest.approx(lo) and row["hi"] == pytest.approx(hi)
    assert out.loc[(out["metric"] == "auroc") & (out["label"] == "a"), "value"].iloc[0] == pytest.approx(
        roc_auc_score(y[:, 0], s[:, 0])
    )


def test_regression_cis_against_subject_loop():
    rng = np.random.default_rng(6)
    subjects = np.repeat([f"s{i}" for i in range(40)], rng.integers(1, 3, 40))
    age = rng.uniform(20, 90, len(subjects))
    pred = age + rng.normal(0, 5, len(age))
    out = ex.evaluate_predictions(pred, age, subjects, "regression", ["age"], n_boot=60, seed=2).set_index("metric")
    uniq = np.unique(subjects)
    rows_of = [np.flatnonzero(subjects == u) for u in uniq]
    mae, rmse = [], []
    for idx in bootstrap_indices(len(uniq), 60, 2):
        rows = np.concatenate([rows_of[i] for i in idx])
        e = pred[rows] - age[rows]
        mae.append(np.abs(e).mean())
        rmse.append(np.sqrt((e**2).mean()))
    assert out.loc["mae", "value"] == pytest.approx(np.abs(pred - age).mean())
    assert out.loc["rmse", "value"] == pytest.approx(np.sqrt(((pred - age) ** 2).mean()))
    assert out.loc["mae", "lo"] == pytest.approx(np.percentile(mae, 2.5))
    assert out.loc["rmse", "hi"] == pytest.approx(np.percentile(rmse, 97.5))


def test_frozen_transfer_ensembles_fold_models_on_the_other_dataset():
    y, subjects, rng = _cohort(seed=7, multi=False)
    noise = rng.normal(size=len(y))

    def fit_predict(train, val, test, hp):
        return (y * 2 + noise)[val], (y * 2 + noise)[test]

    res = ex.run_protocol(fit_predict, y, subjects, [{"w": 1}], n_folds=3, n_boot=20, seed=0)
    yb = np.r_[np.zeros(30), np.ones(30)].astype(int)
    subj_b = np.array([f"b{i}" for i in range(60)])
    seen = []

    def predict_fold(fold, hp):
        seen.append((fold, hp["w"]))
        return yb * 1.0 + fold

    scores, metrics = ex.frozen_transfer(predict_fold, res, yb, subj_b, n_boot=20)
    assert seen == [(0, 1), (1, 1), (2, 1)]
    assert np.allclose(scores[:, 0], yb + 1.0)
    assert metrics.loc[metrics["metric"] == "auroc", "value"].iloc[0] == 1.0
