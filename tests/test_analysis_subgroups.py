"""Subgroup AUROC differentials: the paired bootstrap against a loop of sklearn roc_auc_score on the
same resample indices; eligibility, separation index and outliers."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from neurovfm.analysis import subgroups as sg
from neurovfm.analysis.resample import SubsetAUROC, cluster_count_chunks
from neurovfm.eval.bootstrap import bootstrap_indices


def _data(seed=0, n=240):
    rng = np.random.default_rng(seed)
    meta = pd.DataFrame(
        {
            "manufacturer": rng.choice(["GE", "Siemens", "Philips"], n),
            "field_strength": rng.choice([1.5, 3.0, np.nan], n),
            "age": rng.uniform(5, 95, n).round(),
            "sex": rng.choice(["F", "M"], n),
            "site": rng.choice(["Main", "West", "East", "North"], n, p=[0.4, 0.3, 0.2, 0.1]),
        }
    )
    y = (rng.random((n, 3)) < [0.3, 0.4, 0.03]).astype(int)
    s = rng.normal(size=(n, 3)) + 1.2 * y
    s[meta["manufacturer"] == "Philips", 0] = rng.normal(size=(meta["manufacturer"] == "Philips").sum())
    s = np.round(s, 1)  # ties
    return meta, y, s


def test_subset_auroc_matches_sklearn_on_weighted_subsets():
    meta, y, s = _data()
    masks = np.vstack([np.ones(len(y), bool), meta["site"].eq("West").to_numpy()])
    eng = SubsetAUROC(s[:, 0], y[:, 0], masks)
    counts = np.random.default_rng(5).integers(0, 3, size=(len(y), 4))
    got = eng(counts)
    for r in range(4):
        for g in range(2):
            rep = np.repeat(np.arange(len(y)), counts[:, r] * masks[g])
            assert got[r, g] == pytest.approx(roc_auc_score(y[rep, 0], s[rep, 0]))


def test_cluster_counts_follow_subject_draws():
    groups = np.array(["b", "a", "b", "c", "a"])
    counts = next(cluster_count_chunks(groups, 3, seed=2, chunk=3))
    for r, idx in enumerate(bootstrap_indices(3, 3, 2)):
        per_subject = np.bincount(idx, minlength=3)  # a, b, c in sorted order
        assert list(counts[:, r]) == list(per_subject[[1, 0, 1, 2, 0]])


def test_subgroup_deltas_against_loop():
    meta, y, s = _data()
    n_boot, seed = 60, 11
    cells, means = sg.subgroup_deltas(
        s,
        y,
        meta,
        ["a", "b", "c"],
        ["manufacturer", "age_sex", "site"],
        age_bins=[0, 40, 65, np.inf],
        min_pos=10,
        min_neg=10,
        n_boot=n_boot,
        seed=seed,
        max_levels={"site": 3},
        chunk=25,
    )
    assert set(cells.loc[cells["variable"] == "site", "level"]) == {"Main", "West", "East"}
    assert (cells.loc[cells["label"] == "c", "status"] == "class_not_evaluable").all()
    groups = sg.subgroup_masks(meta, ["manufacturer", "age_sex", "site"], [0, 40, 65, np.inf], {"site": 3})
    draws = list(bootstrap_indices(len(y), n_boot, seed))
    for j in (0, 1):
        for g in groups:
            row = cells[
                (cells["label"] == "ab"[j]) & (cells["variable"] == g.variable) & (cells["level"] == g.level)
            ].iloc[0]
            npos = y[g.mask, j].sum()
            if npos < 10 or (g.mask.sum() - npos) < 10:
                assert row["status"] != "ok" and np.isnan(row["delta"])
                continue
            assert row["status"] == "ok"
            full = roc_auc_score(y[:, j], s[:, j])
            sub = roc_auc_score(y[g.mask, j], s[g.mask, j])
            assert row["delta"] == pytest.approx(sub - full)
            deltas = []
            for idx in draws:
                in_g = idx[g.mask[idx]]
                yy = y[in_g, j]
                d = (roc_auc_score(yy, s[in_g, j]) if 0 < yy.sum() < len(yy) else np.nan) - roc_auc_score(
                    y[idx, j], s[idx, j]
                )
                deltas.append(d)
            lo, hi = np.nanpercentile(deltas, [2.5, 97.5])
            assert row["delta_lo"] == pytest.approx(lo) and row["delta_hi"] == pytest.approx(hi)
            half = (hi - lo) / 2
            assert row["S"] == pytest.approx((sub - full) / half)
            assert row["outlier"] == (abs(row["S"]) > 1 and not (lo >= -0.05 and hi <= 0.05))
    # the degraded manufacturer is flagged for class a
    philips = cells[(cells["label"] == "a") & (cells["level"] == "Philips")].iloc[0]
    assert philips["delta"] < -0.1 and philips["outlier"]
    named = sg.named_outliers(cells)
    assert "Philips" in set(named.loc[named["label"] == "a", "level"])
    assert list(named["S"].abs()) == sorted(named["S"].abs(), reverse=True)
    # means: the full-set row equals the mean of the evaluable classes' AUROC
    all_row = means[means["variable"] == "all"].iloc[0]
    assert all_row["n_classes"] == 2
    assert all_row["mean_auroc"] == pytest.approx(np.mean([roc_auc_score(y[:, j], s[:, j]) for j in (0, 1)]))
    assert all_row["mean_auroc_lo"] < all_row["mean_auroc"] < all_row["mean_auroc_hi"]


def test_missing_levels_and_age_bands():
    meta = pd.DataFrame(
        {"field_strength": [1.5, np.nan, 3.0, None], "age": [10, 40, 70, np.nan], "sex": ["F", "M", "", "F"]}
    )
    groups = sg.subgroup_masks(meta, ["field_strength", "age_sex"], [0, 18, 65, np.inf])
    names = [(g.variable, g.level) for g in groups]
    assert names == [
        ("field_strength", "1.5"),
        ("field_strength", "3.0"),
        ("age_sex", "0-18 F"),
        ("age_sex", "18-65 M"),
    ]
    with pytest.raises(KeyError, match="ethnicity"):
        sg.subgroup_masks(meta, ["ethnicity"], [0, 100])
