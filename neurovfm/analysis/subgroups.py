"""Robustness across subgroups of the test set (paper: Extended Data Fig. 11, Methods "Subgroup and
health system analysis").

For every diagnosis and every subgroup (a level of a metadata column: manufacturer, MRI field
strength, age band x sex, ethnicity, site) the AUROC differential against the full test set,
``delta_g = AUROC_g - AUROC_all``, with a percentile CI from a *paired*, study-level bootstrap: each
replicate resamples the full test set once, and both the subgroup's AUROC (over the resampled studies
of the subgroup) and the full-set AUROC are computed on that same replicate. A cell is evaluable when
the subgroup holds at least ``min_pos`` positives and ``min_neg`` negatives (paper: 10 each).

The CI separation index is ``S = delta / half-width`` of the 95% CI; the paper reads ``|S| > 1`` as a
CI that excludes zero (a significant deviation) and cells whose CI lies inside the a-priori band
(+/- 0.05 AUROC) as showing no material deviation. Outliers here are cells with ``|S| > outlier_s``
(paper: 1) whose CI is not inside the band, i.e. significant and possibly material.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from neurovfm.analysis.resample import SubsetAUROC, study_count_chunks
from neurovfm.eval.bootstrap import percentile_ci
from neurovfm.utils.progress import Progress

log = logging.getLogger("neurovfm")

AGE_SEX = "age_sex"  # pseudo-column: age band crossed with sex
AGE = "age"  # age bands alone
CELL_COLUMNS = [
    "label",
    "variable",
    "level",
    "n",
    "n_pos",
    "n_neg",
    "status",
    "auroc_all",
    "auroc_group",
    "delta",
    "delta_lo",
    "delta_hi",
    "half_width",
    "S",
    "within_band",
    "outlier",
]


@dataclass(frozen=True)
class Subgroup:
    variable: str
    level: str
    mask: np.ndarray  # bool [n_studies]


def age_band_labels(edges: Sequence[float]) -> list[str]:
    """Names of the half-open bands [e_i, e_{i+1}) ("18-40"; the last one "65+" when open-ended)."""
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        out.append(f"{lo:g}+" if not np.isfinite(hi) else f"{lo:g}-{hi:g}")
    return out


def _age_band(age, edges: Sequence[float]) -> np.ndarray:
    a = pd.to_numeric(pd.Series(age), errors="coerce").to_numpy(float)
    names = np.array(age_band_labels(edges), dtype=object)
    idx = np.searchsorted(np.asarray(edges, float), a, side="right") - 1
    ok = np.isfinite(a) & (idx >= 0) & (idx < len(names))
    out = np.full(len(a), "", dtype=object)
    out[ok] = names[idx[ok]]
    return out


def _levels(values: np.ndarray) -> np.ndarray:
    """Level strings; missing values (NaN, None, empty) become ""."""
    s = pd.Series(values, dtype=object)
    return np.where(s.isna(), "", s.astype(str).str.strip()).astype(object)


def subgroup_masks(
    meta: pd.DataFrame, variables: Sequence[str], age_bins: Sequence[float], max_levels: Mapping[str, int] | None = None
) -> list[Subgroup]:
    """One :class:`Subgroup` per observed level of each variable (rows aligned with ``meta``).

    ``variables``: columns of ``meta``, or ``age_sex`` / ``age`` (bands from ``age_bins`` edges; use
    ``.inf`` as the last edge for an open band). Missing values form no subgroup (so CT studies, which
    have no field strength, fall out of the field-strength subgroups). ``max_levels``: keep only the
    most frequent levels of a variable (paper: the three most common sites).
    """
    max_levels = dict(max_levels or {})
    out = []
    for var in variables:
        if var in (AGE_SEX, AGE):
            band = _age_band(meta["age"], age_bins)
            if var == AGE_SEX:
                sex = _levels(meta["sex"].to_numpy())
                vals = np.where((band != "") & (sex != ""), band + " " + sex, "").astype(object)
            else:
                vals = band
        elif var in meta.columns:
            vals = _levels(meta[var].to_numpy())
        else:
            raise KeyError(f"subgroup variable {var!r} is not a column of the metadata ({list(meta.columns)})")
        counts = pd.Series(vals[vals != ""]).value_counts(sort=True)
        levels = sorted(counts.index[: max_levels[var]] if var in max_levels else counts.index)
        out.extend(Subgroup(var, str(lv), vals == lv) for lv in levels)
    return out


def subgroup_deltas(
    scores,
    labels,
    meta: pd.DataFrame,
    class_names: Sequence[str],
    variables: Sequence[str],
    age_bins: Sequence[float],
    min_pos: int = 10,
    min_neg: int = 10,
    n_boot: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
    band: float = 0.05,
    outlier_s: float = 1.0,
    max_levels: Mapping[str, int] | None = None,
    chunk: int = 256,
    progress_every_s: float = 10.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-cell AUROC differentials and per-subgroup mean AUROC, from one paired bootstrap.

    ``scores`` / ``labels``: [n_studies, n_classes] test-set logits and 0/1 labels of one modality;
    ``meta``: one row per study in the same order. Returns ``(cells, means)``:

    * ``cells`` (columns ``CELL_COLUMNS``): one row per (class, subgroup); ``status`` is ``ok`` or why
      the cell is not evaluable (``too_few_positives`` / ``too_few_negatives`` in the subgroup, or
      ``class_not_evaluable`` on the full set); ``S`` = delta / CI half-width; ``within_band`` when the
      whole CI lies inside +/- ``band``; ``outlier`` when ``|S| > outlier_s`` and not ``within_band``.
    * ``means``: per subgroup (and the full set, ``variable == "all"``) the mean AUROC over the
      classes evaluable in that subgroup, with the percentile CI of that mean across replicates
      (paper: Extended Data Fig. 11e).
    """
    S_ = np.asarray(scores, dtype=float)
    Y = np.asarray(labels).astype(bool)
    if S_.shape != Y.shape or S_.ndim != 2 or len(meta) != len(S_):
        raise ValueError("scores and labels must be [n_studies, n_classes] with one metadata row per study")
    n, k = S_.shape
    groups = subgroup_masks(meta.reset_index(drop=True), variables, age_bins, max_levels)
    G = len(groups)
    masks = np.vstack([np.ones(n, bool)] + [g.mask for g in groups]) if G else np.ones((1, n), bool)

    npos = masks.astype(np.int64) @ Y.astype(np.int64)  # [G+1, K]
    nneg = masks.sum(axis=1)[:, None] - npos
    status = np.full((G + 1, k), "ok", dtype=object)
    status[npos < min_pos] = "too_few_positives"
    status[(npos >= min_pos) & (nneg < min_neg)] = "too_few_negatives"
    status[1:, status[0] != "ok"] = "class_not_evaluable"
    ok = status == "ok"

    engines = [SubsetAUROC(S_[:, j], Y[:, j], masks) if ok[0, j] else None for j in range(k)]
    point = np.full((G + 1, k), np.nan)
    for j, eng in enumerate(engines):
        if eng is not None:
            point[:, j] = eng.point()
    point[~ok] = np.nan

    delta_reps = np.full((n_boot, G, k), np.nan, dtype=np.float32)
    mean_sum = np.zeros((n_boot, G + 1))
    mean_cnt = np.zeros((n_boot, G + 1))
    prog = Progress(n_boot, "subgroup bootstrap", log, every_s=progress_every_s, unit="replicates")
    start = 0
    for counts in study_count_chunks(n, n_boot, seed, chunk):
        m = counts.shape[1]
        for j, eng in enumerate(engines):
            if eng is None:
                continue
            reps = eng(counts)  # [m, G+1]
            reps[:, ~ok[:, j]] = np.nan
            delta_reps[start : start + m, :, j] = reps[:, 1:] - reps[:, :1]
            fin = np.isfinite(reps)
            mean_sum[start : start + m] += np.where(fin, reps, 0.0)
            mean_cnt[start : start + m] += fin
        start += m
        prog.update(m)
    prog.close()

    rows = []
    for gi, g in enumerate(groups, start=1):
        lo, hi = percentile_ci(delta_reps[:, gi - 1, :].astype(float), alpha)
        for j, name in enumerate(class_names):
            d = point[gi, j] - point[0, j]
            half = (hi[j] - lo[j]) / 2.0
            with np.errstate(divide="ignore", invalid="ignore"):
                s_idx = d / half if half > 0 else np.nan
            within = bool(ok[gi, j] and lo[j] >= -band and hi[j] <= band)
            rows.append(
                {
                    "label": name,
                    "variable": g.variable,
                    "level": g.level,
                    "n": int(g.mask.sum()),
                    "n_pos": int(npos[gi, j]),
                    "n_neg": int(nneg[gi, j]),
                    "status": status[gi, j],
                    "auroc_all": point[0, j],
                    "auroc_group": point[gi, j],
                    "delta": d,
                    "delta_lo": lo[j],
                    "delta_hi": hi[j],
                    "half_width": half,
                    "S": s_idx,
                    "within_band": within,
                    "outlier": bool(ok[gi, j] and np.isfinite(s_idx) and abs(s_idx) > outlier_s and not within),
                }
            )
    cells = pd.DataFrame(rows, columns=CELL_COLUMNS)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_reps = np.where(mean_cnt > 0, mean_sum / np.maximum(mean_cnt, 1), np.nan)
    mlo, mhi = percentile_ci(mean_reps, alpha)
    names = [("all", "all")] + [(g.variable, g.level) for g in groups]
    means = pd.DataFrame(
        {
            "variable": [a for a, _ in names],
            "level": [b for _, b in names],
            "n": masks.sum(axis=1).astype(int),
            "n_classes": ok.sum(axis=1).astype(int),
            "mean_auroc": [np.nanmean(point[i][ok[i]]) if ok[i].any() else np.nan for i in range(G + 1)],
            "mean_auroc_lo": mlo,
            "mean_auroc_hi": mhi,
        }
    )
    return cells, means


def named_outliers(cells: pd.DataFrame) -> pd.DataFrame:
    """The outlier cells, most separated first (the ones the figure annotates)."""
    out = cells[cells["outlier"]].copy()
    return out.reindex(out["S"].abs().sort_values(ascending=False).index).reset_index(drop=True)
