"""Label efficiency: Platt scaling, statsmodels OLS/HC3 against a hand computation, the ANCOVA
slope decision, and the label-equivalence bootstrap against a loop of statsmodels refits."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy.optimize import minimize

from neurovfm.analysis import label_efficiency as le
from neurovfm.eval.bootstrap import bootstrap_indices


def _hand_ols_hc3(X, y):
    xtx_inv = np.linalg.inv(X.T @ X)
    beta = xtx_inv @ X.T @ y
    e = y - X @ beta
    h = np.einsum("ij,jk,ik->i", X, xtx_inv, X)
    meat = X.T @ (X * (e**2 / (1 - h) ** 2)[:, None])
    return beta, np.sqrt(np.diag(xtx_inv @ meat @ xtx_inv))


def _toy_table(rng, encoders=None, n_classes=40, slopes=None, noise=0.03, modalities=("CT", "MR")):
    encoders = encoders or {"vfm": 0.25}
    slopes = slopes or {e: 0.2 for e in encoders}
    rows = []
    for c in range(n_classes):
        mod = modalities[c % len(modalities)]
        n = int(rng.integers(30, 3000))
        for e, a in encoders.items():
            f1 = a + slopes[e] * np.log10(n) + (0.05 if mod == "MR" else 0.0) + rng.normal(0, noise)
            rows.append(
                {
                    "encoder": e,
                    "modality": mod,
                    "label": f"dx{c}",
                    "n_train_pos": n,
                    "n_test_pos": 20,
                    "f1": f1,
                    "included": True,
                }
            )
    return pd.DataFrame(rows)


def test_platt_matches_smoothed_target_likelihood():
    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.3
    s = rng.normal(size=200) + 1.5 * y
    a, b = le.platt_fit(s, y)
    t = np.where(y, (y.sum() + 1) / (y.sum() + 2), 1 / ((~y).sum() + 2))

    def nll(p):
        z = p[0] * s + p[1]
        return np.sum(np.logaddexp(0, z) - t * z)

    ref = minimize(nll, x0=[1.0, 0.0], method="BFGS").x
    assert np.allclose([a, b], ref, atol=1e-3)


def test_platt_is_finite_on_separable_validation():
    s = np.r_[np.linspace(-3, -1, 10), np.linspace(1, 3, 10)]
    y = np.r_[np.zeros(10), np.ones(10)]
    a, b = le.platt_fit(s, y)
    assert np.isfinite(a) and np.isfinite(b) and a > 0
    p = le.platt_apply(s, a, b)
    assert np.all(p[y == 1] > 0.5) and np.all(p[y == 0] < 0.5)


def test_table_records_exclusions_and_f1():
    rng = np.random.default_rng(1)
    n_val, n_test = 60, 80
    vy = np.zeros((n_val, 3), int)
    vy[:10, 0] = vy[:10, 1] = 1  # class 2 has no validation positives
    ty = np.zeros((n_test, 3), int)
    ty[:20, 0] = ty[:3, 1] = ty[:20, 2] = 1
    vs, ts = rng.normal(size=vy.shape) + 2 * vy, rng.normal(size=ty.shape) + 2 * ty
    tab = le.label_efficiency_table(
        "vfm", "CT", ["a", "b", "c"], [50, 50, 5], vs, vy, ts, ty, min_train_pos=30, min_test_pos=10
    )
    assert list(tab["included"]) == [True, False, False]
    assert tab.loc[1, "reason"] == "few_test_positives"
    assert tab.loc[2, "reason"] == "few_train_positives;no_val_positives"
    a, b = le.platt_fit(vs[:, 0], vy[:, 0])
    pred = 1 / (1 + np.exp(-(a * ts[:, 0] + b))) >= 0.5
    tp = (pred & (ty[:, 0] == 1)).sum()
    assert tab.loc[0, "f1"] == pytest.approx(2 * tp / (pred.sum() + ty[:, 0].sum()))


def test_scaling_fit_reproduces_hand_ols_hc3():
    rng = np.random.default_rng(2)
    tab = _toy_table(rng, noise=0.08)
    tab.loc[3, "included"] = False
    fit = le.fit_scaling(tab)
    df = tab[tab["included"]]
    ln = np.log10(df["n_train_pos"].to_numpy(float))
    mr = (df["modality"] == "MR").to_numpy(float)
    X = np.column_stack([np.ones(len(df)), mr, ln, ln * mr])
    beta, se = _hand_ols_hc3(X, df["f1"].to_numpy())
    names = ["Intercept", "C(modality)[T.MR]", "log10_n", "log10_n:C(modality)[T.MR]"]
    coefs = fit.coefs.set_index("term").loc[names]
    assert np.allclose(coefs["coef"], beta)
    assert np.allclose(coefs["se"], se)
    lines = fit.lines.set_index("modality")
    assert lines.loc["MR", "slope"] == pytest.approx(beta[2] + beta[3])
    assert lines.loc["MR", "intercept"] == pytest.approx(beta[0] + beta[1])


def test_ancova_shared_vs_specific_slopes():
    rng = np.random.default_rng(3)
    equal = _toy_table(rng, {"vfm": 0.3, "hlip": 0.2, "dino": 0.1}, n_classes=60, noise=0.02)
    res = le.ancova(equal, "vfm")
    assert res.shared_slope and res.p_slope_equality > 0.05
    assert res.encoders[0] == "vfm"
    assert np.allclose(res.lines["slope"], res.lines["slope"].iloc[0])
    differ = _toy_table(rng, {"vfm": 0.3, "hlip": 0.2}, n_classes=60, noise=0.02, slopes={"vfm": 0.25, "hlip": 0.1})
    res2 = le.ancova(differ, "vfm")
    assert not res2.shared_slope and res2.p_slope_equality < 1e-6
    lines = res2.lines.set_index("encoder")
    assert lines.loc["vfm", "slope"] == pytest.approx(0.25, abs=0.03)
    assert lines.loc["hlip", "slope"] == pytest.approx(0.10, abs=0.03)


def _loop_fold(tab, reference, baseline, formula, shared, f_ref, n_boot, seed):
    df = le._encoder_frame(tab, reference)
    classes = sorted(set(zip(df["modality"], df["label"])))
    by_class = {c: df[(df["modality"] == c[0]) & (df["label"] == c[1])] for c in classes}
    out = []
    for idx in bootstrap_indices(len(classes), n_boot, seed):
        boot = pd.concat([by_class[classes[i]] for i in idx], ignore_index=True)
        p = smf.ols(formula, data=boot).fit().params
        a0, b0, d = p["Intercept"], p["log10_n"], p[f"enc[T.{baseline}]"]
        if shared:
            out.append(-d / b0)
        else:
            s = p[f"log10_n:enc[T.{baseline}]"]
            out.append((f_ref - a0 - d) / (b0 + s) - (f_ref - a0) / b0)
    return np.array(out)


@pytest.mark.parametrize("slopes", [None, {"vfm": 0.25, "hlip": 0.12}])
def test_label_equivalence_against_loop(slopes):
    rng = np.random.default_rng(4)
    tab = _toy_table(rng, {"vfm": 0.3, "hlip": 0.2}, n_classes=30, noise=0.02, slopes=slopes)
    out, reps = le.label_equivalence(tab, "vfm", n_boot=150, seed=7, chunk=64)
    row = out.iloc[0]
    shared = slopes is None
    assert row["slopes"] == ("shared" if shared else "encoder_specific")
    fit = le.ancova(tab, "vfm")
    loop = _loop_fold(tab, "vfm", "hlip", fit.formula, shared, row["reference_f1"], 150, 7)
    assert np.allclose(reps[:, 0], loop)
    lo, hi = np.percentile(loop, [2.5, 97.5])
    assert row["fold_lo"] == pytest.approx(10**lo) and row["fold_hi"] == pytest.approx(10**hi)
    if shared:  # intercept gap 0.1 with slope 0.2: the baseline needs 10 ** 0.5 times the positives
        assert row["fold"] == pytest.approx(10**0.5, rel=0.1)
        assert row["fold_lo"] < row["fold"] < row["fold_hi"]
    else:
        lines = fit.lines.set_index("encoder")
        f = row["reference_f1"]
        expect = (f - lines.loc["hlip", "intercept"]) / lines.loc["hlip", "slope"] - (
            f - lines.loc["vfm", "intercept"]
        ) / lines.loc["vfm", "slope"]
        assert row["fold"] == pytest.approx(10**expect)
