"""Tables of the report-generation evaluation: text metrics, triage accuracy (overall, per modality, per acute
pathology, with and without the indication), urgent-finding detection, judge validation and scaling.
Every mean carries a study-level percentile bootstrap interval."""

from __future__ import annotations

import numpy as np
import pandas as pd

from neurovfm.eval import bootstrap_indices, percentile_ci

from .metrics_text import METRICS, implementations, score_pairs
from .quality import is_repetition


def mean_ci(values, n_boot: int, seed: int, alpha: float) -> tuple[float, float, float]:
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    reps = np.array([v[idx].mean() for idx in bootstrap_indices(v.size, n_boot, seed)])[:, None]
    lo, hi = percentile_ci(reps, alpha)
    return float(v.mean()), float(lo[0]), float(hi[0])


def answer_text(row: dict, normal_text: str) -> str:
    """The text of an answer for the text metrics: its findings, the normal text for an empty list, and the
    raw answer for a malformed one (it is scored as written, not dropped)."""
    if row["status"] != "ok":
        return row.get("raw") or ""
    return " ".join(row["findings"]) or normal_text


def text_metrics(
    gens: pd.DataFrame, refs: dict[str, list[str]], normal_text: str, subsets: dict[str, set], ev: dict, seed: int
) -> pd.DataFrame:
    """``gens``: model, variant, study_id, status, findings, raw -> one row per (model, variant, subset, metric)."""
    rows = []
    impl = implementations()
    for (model, variant), g in gens.groupby(["model", "variant"], sort=True):
        for subset, ids in subsets.items():
            sub = g[g.study_id.isin(ids)]
            if sub.empty:
                continue
            hyps = [answer_text(r, normal_text) for r in sub.to_dict("records")]
            ref_txt = [" ".join(refs[s]) or normal_text for s in sub.study_id]
            for name in METRICS:
                scores = score_pairs(name, hyps, ref_txt)
                m, lo, hi = mean_ci(scores, int(ev["n_boot"]), seed, float(ev["alpha"]))
                rows.append(
                    {
                        "model": model,
                        "variant": variant,
                        "subset": subset,
                        "metric": name,
                        "n": len(scores),
                        "mean": m,
                        "ci_lo": lo,
                        "ci_hi": hi,
                        "malformed": int((sub.status != "ok").sum()),
                        "repeated": int(sum(is_repetition(r) for r in sub.to_dict("records"))),
                        "implementation": impl[name],
                    }
                )
    return pd.DataFrame(rows)


def triage_scores(pred: pd.DataFrame, strata: dict[str, set], ev: dict, seed: int) -> pd.DataFrame:
    """``pred``: model, variant, judge, study_id, acuity, predicted (None: malformed reply) -> accuracy and
    urgent detection per (model, variant, judge, stratum)."""
    rows = []
    for (model, variant, judge), g in pred.groupby(["model", "variant", "judge"], sort=True):
        for stratum, ids in strata.items():
            sub = g[g.study_id.isin(ids)]
            if sub.empty:
                continue
            correct = (sub.predicted == sub.acuity).to_numpy(float)
            acc, lo, hi = mean_ci(correct, int(ev["n_boot"]), seed, float(ev["alpha"]))
            urgent = sub[sub.acuity == "urgent"]
            hit = (urgent.predicted == "urgent").to_numpy(float)
            sens, s_lo, s_hi = mean_ci(hit, int(ev["n_boot"]), seed, float(ev["alpha"]))
            flagged = sub[sub.predicted == "urgent"]
            ppv = float((flagged.acuity == "urgent").mean()) if len(flagged) else float("nan")
            rows.append(
                {
                    "model": model,
                    "variant": variant,
                    "judge": judge,
                    "stratum": stratum,
                    "n": len(sub),
                    "accuracy": acc,
                    "ci_lo": lo,
                    "ci_hi": hi,
                    "n_urgent": len(urgent),
                    "urgent_sensitivity": sens,
                    "urgent_ci_lo": s_lo,
                    "urgent_ci_hi": s_hi,
                    "urgent_ppv": ppv,
                    "judge_errors": int(sub.predicted.isna().sum()),
                }
            )
    return pd.DataFrame(rows)


def pathology_strata(triage_set: pd.DataFrame, label_tables: dict[str, pd.DataFrame], pathologies: dict) -> dict:
    """{"pathology:<name>": study ids of the set with any of the pathology's ground-truth labels}."""
    out = {}
    for name, per_mod in pathologies.items():
        ids = set()
        for m, table in label_tables.items():
            cols = [c for c in per_mod[m] if c in table.columns]
            if not cols:
                continue
            sub = table.loc[table.index.intersection(triage_set.study_id[triage_set.modality == m])]
            ids |= set(sub.index[(sub[cols] == 1).any(axis=1)])
        out[f"pathology:{name}"] = ids
    return out
