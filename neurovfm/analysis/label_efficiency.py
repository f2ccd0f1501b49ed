"""Label efficiency: calibrated F1 against the number of training positives (paper: Fig. 2e, Methods
"Label efficiency", Extended Data Figs 8b and 10b).

Steps, each a public function:

1. :func:`platt_fit` / :func:`calibrated_f1` -- per class, Platt scaling fitted on the validation
   logits (a logistic regression of the label on the one-dimensional logit, with Platt's smoothed
   targets so that separable validation sets give a finite fit), then F1 on the test set at the
   calibrated probability 0.5.
2. :func:`label_efficiency_table` -- one row per class with the counts, the calibration and F1, and
   whether the class is excluded (fewer than ``min_train_pos`` training positives or ``min_test_pos``
   test positives; paper: 30 and 10) and why.
3. :func:`fit_scaling` -- OLS of F1 on log10(training positives) with HC3 standard errors; with both
   modalities present, a modality fixed effect and its interaction with log10(n).
4. :func:`ancova` -- encoders compared on one table: the slope-equality test (joint Wald test, HC3
   covariance, of the encoder x log10(n) interaction terms); a shared slope when it is not
   significant at ``alpha``, encoder-specific slopes otherwise.
5. :func:`label_equivalence` -- how many times more positives a baseline needs to match the reference
   encoder (NeuroVFM) at a fixed F1, with a percentile CI from bootstrap replicates that resample
   classes (all encoders' rows of a drawn class travel together).

Label-equivalence fold. With lines ``F1 = a_e + b_e log10(n)``, the positives an encoder needs for an
F1 of ``f`` are ``log10 n_e(f) = (f - a_e) / b_e`` and the fold is ``10 ** (log10 n_e(f) -
log10 n_ref(f))``. With a shared slope this is ``10 ** ((a_ref - a_e) / b)`` whatever ``f``; with
encoder-specific slopes it depends on ``f``, which is then the ``reference_f1`` given (default: the
mean observed F1 of the reference encoder). When the table holds both modalities, the lines are
those of the first modality level (the modality effect is additive, so with a shared slope the fold
is the same for both). The bootstrap keeps the slope model chosen on the full table.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from neurovfm.eval.bootstrap import bootstrap_indices, percentile_ci

log = logging.getLogger("neurovfm")

TABLE_COLUMNS = [
    "encoder",
    "modality",
    "label",
    "n_train_pos",
    "n_val_pos",
    "n_test_pos",
    "n_test",
    "platt_a",
    "platt_b",
    "f1",
    "included",
    "reason",
]


# ----------------------------------------------------------------------------- calibration and F1
def platt_fit(val_logits, val_labels) -> tuple[float, float]:
    """Platt scaling ``p = sigmoid(a * logit + b)`` fitted on validation data; returns ``(a, b)``.

    Maximum likelihood (no penalty) against Platt's smoothed targets ``(N+ + 1) / (N+ + 2)`` for
    positives and ``1 / (N- + 2)`` for negatives, fitted with sklearn's ``LogisticRegression`` by
    entering every study once as a positive and once as a negative weighted by its target.
    """
    from sklearn.linear_model import LogisticRegression

    s = np.asarray(val_logits, dtype=float).ravel()
    y = np.asarray(val_labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise ValueError("val_logits and val_labels must have the same length")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("Platt scaling needs validation positives and negatives")
    t = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    x = np.r_[s, s][:, None]
    target = np.r_[np.ones(len(s)), np.zeros(len(s))]
    weight = np.r_[t, 1.0 - t]
    model = LogisticRegression(C=np.inf, max_iter=1000).fit(x, target, sample_weight=weight)
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def platt_apply(logits, a: float, b: float) -> np.ndarray:
    z = a * np.asarray(logits, dtype=float) + b
    return 1.0 / (1.0 + np.exp(-z))


def f1_score(pred, labels) -> float:
    """F1 of boolean predictions (0 when there are neither predicted nor true positives)."""
    p = np.asarray(pred, dtype=bool).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    tp = int((p & y).sum())
    denom = int(p.sum()) + int(y.sum())
    return 2.0 * tp / denom if denom else 0.0


def calibrated_f1(test_logits, test_labels, a: float, b: float, threshold: float = 0.5) -> float:
    """F1 on test of the rule ``platt_apply(logit) >= threshold``."""
    return f1_score(platt_apply(test_logits, a, b) >= threshold, test_labels)


def label_efficiency_table(
    encoder: str,
    modality: str,
    class_names: Sequence[str],
    n_train_pos,
    val_scores,
    val_labels,
    test_scores,
    test_labels,
    min_train_pos: int = 30,
    min_test_pos: int = 10,
    threshold: float = 0.5,
) -> pd.DataFrame:
    """One row per class (columns ``TABLE_COLUMNS``) for one encoder and modality.

    ``n_train_pos``: [K] training positives per class; ``val_*`` / ``test_*``: [n, K] logits and 0/1
    labels. Excluded classes keep their row with ``included = False`` and the ``reason``
    (``few_train_positives``, ``few_test_positives``, ``no_val_positives``/``no_val_negatives``: no
    calibration possible); their F1 is still reported when it can be computed.
    """
    vs, vy = np.asarray(val_scores, float), np.asarray(val_labels).astype(bool)
    ts, ty = np.asarray(test_scores, float), np.asarray(test_labels).astype(bool)
    ntr = np.asarray(n_train_pos).astype(int).ravel()
    k = len(class_names)
    if vs.shape[1:] != (k,) or ts.shape[1:] != (k,) or vs.shape != vy.shape or ts.shape != ty.shape or len(ntr) != k:
        raise ValueError("scores/labels must be [n, K] and n_train_pos [K] with K = len(class_names)")
    rows = []
    for j, name in enumerate(class_names):
        reasons = []
        if ntr[j] < min_train_pos:
            reasons.append("few_train_positives")
        if ty[:, j].sum() < min_test_pos:
            reasons.append("few_test_positives")
        a = b = f1 = np.nan
        if not vy[:, j].any():
            reasons.append("no_val_positives")
        elif vy[:, j].all():
            reasons.append("no_val_negatives")
        else:
            a, b = platt_fit(vs[:, j], vy[:, j])
            f1 = calibrated_f1(ts[:, j], ty[:, j], a, b, threshold)
        rows.append(
            {
                "encoder": encoder,
                "modality": modality,
                "label": name,
                "n_train_pos": int(ntr[j]),
                "n_val_pos": int(vy[:, j].sum()),
                "n_test_pos": int(ty[:, j].sum()),
                "n_test": len(ty),
                "platt_a": a,
                "platt_b": b,
                "f1": f1,
                "included": not reasons,
                "reason": ";".join(reasons),
            }
        )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


# ----------------------------------------------------------------------------- regression
def _prepare(table: pd.DataFrame) -> pd.DataFrame:
    df = table[table["included"]] if "included" in table.columns else table
    df = df.dropna(subset=["f1"]).copy()
    if (df["n_train_pos"] <= 0).any():
        raise ValueError("n_train_pos must be positive for log10")
    df["log10_n"] = np.log10(df["n_train_pos"].astype(float))
    return df.reset_index(drop=True)


def coef_table(res) -> pd.DataFrame:
    """Tidy coefficients of a fitted statsmodels result (HC3 SEs when fitted with cov_type='HC3')."""
    ci = np.asarray(res.conf_int())
    return pd.DataFrame(
        {
            "term": list(res.params.index),
            "coef": res.params.to_numpy(),
            "se": res.bse.to_numpy(),
            "stat": res.tvalues.to_numpy(),
            "p": res.pvalues.to_numpy(),
            "ci_lo": ci[:, 0],
            "ci_hi": ci[:, 1],
        }
    )


@dataclass
class ScalingFit:
    result: object  # statsmodels RegressionResults (HC3 covariance)
    coefs: pd.DataFrame  # coef_table(result)
    lines: pd.DataFrame  # modality, intercept, slope (per modality)
    formula: str
    data: pd.DataFrame  # the included rows with log10_n


def fit_scaling(table: pd.DataFrame) -> ScalingFit:
    """OLS of F1 on log10(n_train_pos) with HC3 SEs, modality fixed effect and interaction.

    Uses the included rows of a :func:`label_efficiency_table` (one encoder). With a single modality
    the model is ``f1 ~ log10_n``; with two, ``f1 ~ log10_n * C(modality)`` (first level in sorted
    order is the baseline).
    """
    import statsmodels.formula.api as smf

    df = _prepare(table)
    mods = sorted(df["modality"].unique())
    formula = "f1 ~ log10_n * C(modality)" if len(mods) > 1 else "f1 ~ log10_n"
    res = smf.ols(formula, data=df).fit(cov_type="HC3")
    p = res.params
    lines = []
    for m in mods:
        ti, ts = f"C(modality)[T.{m}]", f"log10_n:C(modality)[T.{m}]"
        lines.append(
            {"modality": m, "intercept": p["Intercept"] + p.get(ti, 0.0), "slope": p["log10_n"] + p.get(ts, 0.0)}
        )
    return ScalingFit(res, coef_table(res), pd.DataFrame(lines), formula, df)


@dataclass
class AncovaResult:
    shared_slope: bool
    p_slope_equality: float
    interaction: object  # fit with encoder x log10_n interaction (HC3)
    chosen: object  # the model kept: shared slope or encoder-specific slopes (HC3)
    formula: str  # formula of the chosen model
    reference: str
    encoders: list  # reference first
    lines: pd.DataFrame  # encoder, intercept, slope (first modality level)
    data: pd.DataFrame


def _encoder_frame(table: pd.DataFrame, reference: str) -> pd.DataFrame:
    df = _prepare(table)
    encs = list(dict.fromkeys(df["encoder"]))
    if reference not in encs:
        raise KeyError(f"reference encoder {reference!r} not in the table ({encs})")
    order = [reference] + sorted(e for e in encs if e != reference)
    df["enc"] = pd.Categorical(df["encoder"], categories=order)
    mods = sorted(df["modality"].unique())
    df["mod"] = pd.Categorical(df["modality"], categories=mods)
    return df


def _formulas(df: pd.DataFrame) -> tuple[str, str]:
    extra = " + mod" if df["mod"].nunique() > 1 else ""
    return f"f1 ~ log10_n * enc{extra}", f"f1 ~ log10_n + enc{extra}"


def _lines(params: pd.Series, encoders: Sequence[str], shared: bool) -> pd.DataFrame:
    rows = []
    for e in encoders:
        d = params.get(f"enc[T.{e}]", 0.0)
        s = 0.0 if shared else params.get(f"log10_n:enc[T.{e}]", 0.0)
        rows.append({"encoder": e, "intercept": params["Intercept"] + d, "slope": params["log10_n"] + s})
    return pd.DataFrame(rows)


def ancova(table: pd.DataFrame, reference: str, alpha: float = 0.05) -> AncovaResult:
    """Slope equality across encoders and the slope model to keep (see the module docstring).

    ``table``: rows of several encoders (concatenated :func:`label_efficiency_table` outputs); with
    both modalities present an additive modality fixed effect enters both models.
    """
    import statsmodels.formula.api as smf

    df = _encoder_frame(table, reference)
    encs = list(df["enc"].cat.categories)
    if len(encs) < 2:
        raise ValueError("ANCOVA needs at least two encoders")
    f_int, f_shared = _formulas(df)
    full = smf.ols(f_int, data=df).fit(cov_type="HC3")
    names = list(full.params.index)
    inter = [i for i, nm in enumerate(names) if nm.startswith("log10_n:enc[T.")]
    R = np.zeros((len(inter), len(names)))
    R[np.arange(len(inter)), inter] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        p = float(np.asarray(full.wald_test(R, use_f=True, scalar=True).pvalue))
    shared = not (p < alpha)
    chosen = smf.ols(f_shared, data=df).fit(cov_type="HC3") if shared else full
    return AncovaResult(
        shared, p, full, chosen, f_shared if shared else f_int, reference, encs, _lines(chosen.params, encs, shared), df
    )


# ----------------------------------------------------------------------------- label equivalence
def _fold(params: np.ndarray, names: list, encoder: str, shared: bool, f_ref: float) -> np.ndarray:
    """log10 fold of ``encoder`` vs the reference from parameter rows [R, p]."""
    col = {n: i for i, n in enumerate(names)}
    a0, b0 = params[:, col["Intercept"]], params[:, col["log10_n"]]
    d = params[:, col[f"enc[T.{encoder}]"]]
    if shared:
        return -d / b0
    s = params[:, col[f"log10_n:enc[T.{encoder}]"]]
    return (f_ref - a0 - d) / (b0 + s) - (f_ref - a0) / b0


def label_equivalence(
    table: pd.DataFrame,
    reference: str,
    n_boot: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
    ancova_alpha: float = 0.05,
    reference_f1: float | None = None,
    chunk: int = 1000,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Fold increase in training positives each baseline needs to match ``reference`` at fixed F1.

    Returns ``(table, log10_fold_reps)``: one row per baseline encoder (``encoder, reference,
    slopes (shared | encoder_specific), p_slope_equality, reference_f1, fold, fold_lo, fold_hi,
    n_classes, n_boot, n_failed``) and the [R, n_baselines] bootstrap replicates of log10(fold).
    Replicates resample the classes (``modality, label``) with ``eval.bootstrap_indices``; each is a
    weighted least-squares refit of the chosen model (integer weights = OLS on the repeated rows);
    replicates whose design is rank-deficient count as failed and are left out of the CI.
    """
    fit = ancova(table, reference, ancova_alpha)
    df = fit.data
    res = fit.chosen
    names = list(res.params.index)
    X = np.asarray(res.model.exog, dtype=float)
    y = np.asarray(res.model.endog, dtype=float)
    baselines = fit.encoders[1:]
    f_ref = float(df.loc[df["encoder"] == reference, "f1"].mean()) if reference_f1 is None else float(reference_f1)
    point = np.array([_fold(res.params.to_numpy()[None, :], names, e, fit.shared_slope, f_ref)[0] for e in baselines])

    keys = list(zip(df["modality"], df["label"]))
    uniq = list(dict.fromkeys(sorted(set(keys))))
    cls_index = {k: i for i, k in enumerate(uniq)}
    row_cls = np.array([cls_index[k] for k in keys])
    p = X.shape[1]
    outer = (X[:, :, None] * X[:, None, :]).reshape(len(X), p * p)
    xy = X * y[:, None]
    reps = np.full((n_boot, len(baselines)), np.nan)
    draws = bootstrap_indices(len(uniq), n_boot, seed)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        W = np.stack([np.bincount(next(draws), minlength=len(uniq)) for _ in range(m)])[:, row_cls].astype(float)
        A = (W @ outer).reshape(m, p, p)
        bvec = W @ xy
        full_rank = np.linalg.matrix_rank(A) == p
        beta = np.full((m, p), np.nan)
        if full_rank.any():
            beta[full_rank] = np.linalg.solve(A[full_rank], bvec[full_rank][:, :, None])[:, :, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            for i, e in enumerate(baselines):
                reps[start : start + m, i] = _fold(beta, names, e, fit.shared_slope, f_ref)
    lo, hi = percentile_ci(reps, alpha)
    out = pd.DataFrame(
        {
            "encoder": baselines,
            "reference": reference,
            "slopes": "shared" if fit.shared_slope else "encoder_specific",
            "p_slope_equality": fit.p_slope_equality,
            "reference_f1": f_ref,
            "fold": np.power(10.0, point),
            "fold_lo": np.power(10.0, lo),
            "fold_hi": np.power(10.0, hi),
            "n_classes": len(uniq),
            "n_boot": n_boot,
            "n_failed": np.isnan(reps).sum(axis=0),
        }
    )
    return out, reps
