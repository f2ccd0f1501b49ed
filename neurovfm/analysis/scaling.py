"""Fig. 2b's statistics: mean test AUROC of the scaling grid's models against data fraction and model size, the
log-linear fit per size and modality, and the multimodal model against the two unimodal ones.

* Points: the ``all`` row of each model's category table (``tables/diagnosis_{modality}_{model}_categories.csv``):
  the mean AUROC over the evaluable classes with its study-level bootstrap interval, as Fig. 2a shows it.
* Fits: per encoder size and modality, ordinary least squares of mean AUROC on log10(data fraction) over the
  size's fractions. Its interval is a paired study-level bootstrap: every model of the line is scored on the same
  resampled test studies in a replicate (:func:`neurovfm.eval.bootstrap.bootstrap_metrics` on the models' score
  columns side by side, as :func:`~neurovfm.eval.bootstrap.paired_auroc_difference` does for two), the line is refit
  per replicate, and the percentile interval of its slope is reported. Same replicates and seed as the diagnosis
  tables, so each replicate's means are those behind the points' intervals; the points of the tables are checked
  against the predictions (a stale table is an error, not a silent mismatch).
* Unimodal: the ``all`` row of ``tables/diagnosis_{modality}_{multimodal}_vs_{unimodal}.csv`` (the workflow's paired
  encoder comparison, :func:`neurovfm.probes.evaluate.encoder_difference`): multimodal minus unimodal mean AUROC
  with its paired study-level interval.

``modality`` keys are the workflow's ``ct`` / ``mri``; slopes are in AUROC per tenfold more data.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from neurovfm.eval.bootstrap import bootstrap_metrics, percentile_ci
from neurovfm.eval.metrics import STATUS_OK
from neurovfm.probes.predictions import read_predictions

MODS = ("ct", "mri")
ALL = "all"
COLUMNS = [
    "section",  # point | fit | unimodal
    "modality",
    "size",
    "params",  # encoder parameters of the size
    "model",
    "modalities",  # what the model was pretrained on: CT+MR, CT or MR
    "data_fraction",
    "n_test",
    "n_classes",
    "auroc",  # point: its mean AUROC; unimodal: the multimodal model's
    "auroc_lo",
    "auroc_hi",
    "n_points",  # fit: fractions on the line
    "slope",  # fit: mean AUROC per log10 unit of data fraction
    "slope_lo",
    "slope_hi",
    "intercept",  # fit: mean AUROC at the full split (log10 1 = 0)
    "compared_with",  # unimodal: the unimodal model
    "auroc_b",  # unimodal: its mean AUROC
    "delta",  # unimodal: multimodal - unimodal
    "delta_lo",
    "delta_hi",
    "status",
]
TOLERANCE = 1e-6  # a table's mean AUROC and the one recomputed from its predictions must agree this closely


def ols_line(x, y) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares ``y = intercept + slope * x`` for each row of ``y`` [..., k] against ``x`` [k] (closed form,
    vectorised over rows; NaN for a row holding NaN, and for fewer than two distinct x)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    dx = x - x.mean()
    sxx = float(np.sum(dx**2))
    if len(x) < 2 or sxx == 0.0:
        nan = np.full(y.shape[:-1], np.nan)
        return nan, nan.copy()
    slope = np.sum((y - y.mean(axis=-1, keepdims=True)) * dx, axis=-1) / sxx
    intercept = y.mean(axis=-1) - slope * x.mean()
    return slope, intercept


def aligned_test_scores(prediction_csvs: Sequence) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """The test rows of several models' ``predictions.csv``, aligned by study: ([scores [n, K] per model], labels
    [n, K], class names). The models must share classes, test studies and labels (a paired comparison)."""
    frames, names0 = [], None
    for path in prediction_csvs:
        df, names = read_predictions(path)
        if names0 is None:
            names0 = names
        elif names != names0:
            raise ValueError(f"{path} predicts other classes than {prediction_csvs[0]}")
        frames.append(df[df["split"] == "test"].set_index("study_id"))
    index = frames[0].index
    for path, t in zip(prediction_csvs, frames):
        if len(t) == 0:
            raise ValueError(f"{path} has no test rows")
        if set(t.index) != set(index):
            only = sorted(set(t.index) ^ set(index))
            raise ValueError(
                f"{path} and {prediction_csvs[0]} were tested on other studies ({len(only)} not shared, e.g. "
                f"{only[:3]}); a paired bootstrap needs the same studies"
            )
    frames = [t.loc[index] for t in frames]
    label_cols = [f"label:{c}" for c in names0]
    labels = frames[0][label_cols].to_numpy(int)
    for path, t in zip(prediction_csvs, frames):
        if not np.array_equal(t[label_cols].to_numpy(int), labels):
            raise ValueError(f"{path} holds other test labels than {prediction_csvs[0]}")
    scores = [t[[f"prob:{c}" for c in names0]].to_numpy(float) for t in frames]
    return scores, labels, list(names0)


def paired_mean_auroc(
    scores: Sequence[np.ndarray], labels, n_boot: int, seed: int, min_pos: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean AUROC over the evaluable classes of each model, and its bootstrap replicates with every model scored on
    the same resampled studies: (point [M], replicates [R, M], evaluable classes). A class is evaluable with
    ``min_pos`` positives and negatives (the same for every model: they share the labels)."""
    m, k = len(scores), np.asarray(labels).shape[1]
    res = bootstrap_metrics(
        np.concatenate([np.asarray(s, float) for s in scores], axis=1),
        np.tile(np.asarray(labels), (1, m)),
        n_boot=n_boot,
        seed=seed,
        min_pos=min_pos,
    )
    ok = np.flatnonzero(np.asarray(res.status[:k]) == STATUS_OK)
    point = np.full(m, np.nan)
    reps = np.full((n_boot, m), np.nan)
    if len(ok):
        with warnings.catch_warnings():  # a replicate without resampled positives in every class -> NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            for j in range(m):
                cols = ok + j * k
                point[j] = float(np.nanmean(res.point["auroc"][cols]))
                reps[:, j] = np.nanmean(res.reps["auroc"][:, cols], axis=1)
    return point, reps, len(ok)


def slope_interval(fractions, reps: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile interval of the per-replicate slopes of mean AUROC on log10(fraction) (``reps`` [R, k]);
    replicates with a NaN mean are left out."""
    slopes, _ = ols_line(np.log10(np.asarray(fractions, float)), reps)
    lo, hi = percentile_ci(slopes[:, None], alpha)
    return float(lo[0]), float(hi[0])


def _all_row(path, key: str) -> pd.Series:
    """The ``all`` row of a category table (``key`` category) or of a comparison table (``key`` label)."""
    t = pd.read_csv(path)
    rows = t[t[key] == ALL]
    if len(rows) != 1:
        raise ValueError(f"{path} has no single {ALL!r} row")
    return rows.iloc[0]


def _row(**values) -> dict:
    return {c: values.get(c, np.nan) for c in COLUMNS}


def _modalities_label(modalities: Sequence[str]) -> str:
    return "+".join(modalities)


def point_rows(models: Sequence[Mapping], categories: Mapping, params: Mapping[str, int]) -> list[dict]:
    """One row per (model, modality) with a category table: ``models`` are the grid's models (mappings with name,
    size, data_fraction, modalities, role), ``categories`` {(model, modality): path}."""
    rows = []
    for m in models:
        for mod in MODS:
            path = categories.get((m["name"], mod))
            if path is None:
                continue
            r = _all_row(path, "category")
            rows.append(
                _row(
                    section="point",
                    modality=mod,
                    size=m["size"],
                    params=params.get(m["size"], np.nan),
                    model=m["name"],
                    modalities=_modalities_label(m["modalities"]),
                    data_fraction=float(m["data_fraction"]),
                    n_test=r.get("n_test", np.nan),
                    n_classes=r["n_classes"],
                    auroc=r["auroc"],
                    auroc_lo=r["auroc_lo"],
                    auroc_hi=r["auroc_hi"],
                    status="ok" if np.isfinite(r["auroc"]) else "no evaluable class",
                )
            )
    return rows


def fit_rows(
    models: Sequence[Mapping],
    predictions: Mapping,
    points: pd.DataFrame,
    params: Mapping[str, int],
    n_boot: int,
    seed: int,
    min_pos: int,
    alpha: float = 0.05,
) -> list[dict]:
    """One row per (size, modality): the least-squares line of mean AUROC on log10(data fraction) over the size's
    multimodal grid models, with the paired bootstrap interval of its slope (``predictions`` {(model, modality):
    predictions.csv}). Points are checked against ``points`` (the category tables' means)."""
    grid = [m for m in models if m["role"] == "grid"]
    sizes = list(dict.fromkeys(m["size"] for m in grid))
    rows = []
    for size in sizes:
        line = sorted((m for m in grid if m["size"] == size), key=lambda m: float(m["data_fraction"]))
        fractions = [float(m["data_fraction"]) for m in line]
        for mod in MODS:
            base = dict(section="fit", modality=mod, size=size, params=params.get(size, np.nan), n_points=len(line))
            if len(line) < 2:
                rows.append(_row(**base, status=f"{len(line)} data fraction (2 needed for a line)"))
                continue
            scores, labels, _ = aligned_test_scores([predictions[(m["name"], mod)] for m in line])
            point, reps, n_classes = paired_mean_auroc(scores, labels, n_boot, seed, min_pos)
            if n_classes == 0:
                rows.append(_row(**base, n_classes=0, status="no evaluable class"))
                continue
            for m, value in zip(line, point):
                shown = points[(points["model"] == m["name"]) & (points["modality"] == mod)]["auroc"]
                if len(shown) and abs(float(shown.iloc[0]) - value) > TOLERANCE:
                    raise ValueError(
                        f"the {mod} category table of {m['name']} says mean AUROC {float(shown.iloc[0]):.6f}, its "
                        f"predictions give {value:.6f}: the table is stale or made with other probes.eval settings"
                    )
            slope, intercept = ols_line(np.log10(fractions), point)
            lo, hi = slope_interval(fractions, reps, alpha)
            rows.append(
                _row(
                    **base,
                    n_test=len(labels),
                    n_classes=n_classes,
                    slope=float(slope),
                    slope_lo=lo,
                    slope_hi=hi,
                    intercept=float(intercept),
                    status="ok",
                )
            )
    return rows


def unimodal_rows(
    pairs: Mapping[str, tuple[str, str]], comparisons: Mapping, sizes: Mapping[str, str], params: Mapping[str, int]
) -> list[dict]:
    """One row per modality of ``pairs`` ({modality: (multimodal, unimodal)}) from its paired comparison table
    (``comparisons`` {modality: path}); ``sizes`` {model: encoder size}, ``params`` {size: parameters}."""
    rows = []
    for mod, (multi, uni) in pairs.items():
        r = _all_row(comparisons[mod], "label")
        rows.append(
            _row(
                section="unimodal",
                modality=mod,
                size=sizes.get(multi, ""),
                params=params.get(sizes.get(multi, ""), np.nan),
                model=multi,
                modalities="CT+MR",
                data_fraction=1.0,
                n_classes=r["n_classes"],
                auroc=r["auroc_a"],
                compared_with=uni,
                auroc_b=r["auroc_b"],
                delta=r["delta"],
                delta_lo=r["delta_lo"],
                delta_hi=r["delta_hi"],
                status=r["status"],
            )
        )
    return rows


def scaling_table(
    models: Sequence[Mapping],
    categories: Mapping,
    predictions: Mapping,
    comparisons: Mapping,
    pairs: Mapping[str, tuple[str, str]],
    params: Mapping[str, int],
    n_boot: int,
    seed: int,
    min_pos: int,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """``tables/scaling.csv``: the point, fit and unimodal rows (columns :data:`COLUMNS`)."""
    points = pd.DataFrame(point_rows(models, categories, params), columns=COLUMNS)
    fits = fit_rows(models, predictions, points, params, n_boot, seed, min_pos, alpha)
    uni = unimodal_rows(pairs, comparisons, {m["name"]: m["size"] for m in models}, params)
    frames = [points] + [pd.DataFrame(r, columns=COLUMNS) for r in (fits, uni) if r]
    return pd.concat(frames, ignore_index=True)
