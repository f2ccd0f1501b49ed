"""Clinical-correctness and degeneration measures of generated findings.

* :func:`is_repetition`: an answer that writes one of its sentences two or more times ("There is present. There
  is present."), read from its findings or, for a malformed answer, from its raw text.
* :func:`label_scores`: label-level precision / recall / F1 of generated findings against the reference findings,
  both read by the project's own rule-based report extractor (CheXbert-style): per diagnosis of each modality's
  ontology (parents implied by a child included, as the label tables have them), their macro mean over the
  diagnoses present in the reference, and the micro (pooled) value, with study-level bootstrap intervals.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from neurovfm.eval import bootstrap_indices, percentile_ci

_SPLIT = re.compile(r"(?<=[.!?])[\s,]+")
_STRIP = re.compile(r'[\[\]"]')


def answer_items(row: dict) -> list[str]:
    """What an answer says: its findings; a malformed answer's raw text split into sentences."""
    if row.get("status") == "ok":
        return [f.strip() for f in row["findings"] if f and f.strip()]
    raw = _STRIP.sub(" ", row.get("raw") or "")
    return [s.strip() for s in _SPLIT.split(raw) if s.strip()]


def _norm(s: str) -> str:
    return " ".join(s.lower().strip(" .,;").split())


def is_repetition(row: dict) -> bool:
    """True when a sentence of the answer is written twice or more ("There is present. There is present.
    Chronic ischemic disease."): a findings list never repeats a finding."""
    items = [_norm(s) for s in answer_items(row)]
    items = [s for s in items if s]
    return len(items) != len(set(items))


def repetition_rate(rows) -> float:
    rows = list(rows)
    return float(np.mean([is_repetition(r) for r in rows])) if rows else float("nan")


class LabelReader:
    """Positive diagnoses of a findings list by the rule-based report extractor (implied parents included)."""

    def __init__(self):
        from neurovfm.labels.rules import RuleExtractor

        self.extractor = RuleExtractor()
        self._cache: dict = {}

    def __call__(self, items: list[str], modality: str) -> frozenset:
        items = [x.strip() for x in items if x and x.strip()]
        if not items:
            return frozenset()
        text = " ".join(x if x.endswith((".", "!", "?")) else x + "." for x in items)
        key = (text, modality)
        if key not in self._cache:
            from neurovfm.labels.rules import positive_labels

            self._cache[key] = frozenset(positive_labels(self.extractor.extract(text, modality)))
        return self._cache[key]


def _f1(tp, fp, fn):
    tp, fp, fn = (np.asarray(a, dtype=float) for a in (tp, fp, fn))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        r = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    return p, r, f


def label_counts(pred: list[frozenset], ref: list[frozenset], modalities: list[str]):
    """Per-study 0/1 matrices TP, FP, FN over the (modality, label) columns seen in either side."""
    cols = sorted(
        {(m, lab) for m, s in zip(modalities, pred) for lab in s}
        | {(m, lab) for m, s in zip(modalities, ref) for lab in s}
    )
    index = {c: k for k, c in enumerate(cols)}
    n = len(pred)
    P, R = np.zeros((n, len(cols))), np.zeros((n, len(cols)))
    for i, (m, ps, rs) in enumerate(zip(modalities, pred, ref)):
        for lab in ps:
            P[i, index[(m, lab)]] = 1
        for lab in rs:
            R[i, index[(m, lab)]] = 1
    return cols, P * R, P * (1 - R), (1 - P) * R


def summary_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[float, float]:
    """(micro F1, macro F1 over the columns with reference support) of summed count vectors."""
    _, _, f = _f1(tp, fp, fn)
    support = (tp + fn) > 0
    macro = float(f[support].mean()) if support.any() else float("nan")
    # no label on either side (a resample of normal studies only): undefined, left out of the interval
    micro = float(_f1(tp.sum(), fp.sum(), fn.sum())[2]) if (tp.sum() + fp.sum() + fn.sum()) > 0 else float("nan")
    return micro, macro


def f1_replicates(TP, FP, FN, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, 2] (micro, macro) F1 over study-level bootstrap resamples."""
    return np.array(
        [summary_f1(TP[i].sum(0), FP[i].sum(0), FN[i].sum(0)) for i in bootstrap_indices(len(TP), n_boot, seed)]
    ).reshape(-1, 2)


def label_scores(
    gens: pd.DataFrame, refs: dict[str, list[str]], subsets: dict[str, set], ev: dict, seed: int, reader=None
) -> pd.DataFrame:
    """``gens``: model, variant, study_id, modality, status, findings, raw -> one row per (model, variant, subset,
    modality, label) with tp, fp, fn, support, precision, recall, f1; plus ``macro`` and ``micro`` rows (modality
    ``all``) with bootstrap intervals of the F1."""
    reader = reader or LabelReader()
    rows = []
    n_boot, alpha = int(ev["n_boot"]), float(ev["alpha"])
    for (model, variant), g in gens.groupby(["model", "variant"], sort=True):
        for subset, ids in subsets.items():
            sub = g[g.study_id.isin(ids)].sort_values("study_id")
            if sub.empty:
                continue
            recs = sub.to_dict("records")
            mods = [r["modality"] for r in recs]
            pred = [reader(answer_items(r), r["modality"]) for r in recs]
            ref = [reader(refs[r["study_id"]], r["modality"]) for r in recs]
            cols, TP, FP, FN = label_counts(pred, ref, mods)
            tp, fp, fn = TP.sum(0), FP.sum(0), FN.sum(0)
            p, r, f = _f1(tp, fp, fn)
            base = {"model": model, "variant": variant, "subset": subset, "n": len(recs)}
            for k, (m, lab) in enumerate(cols):
                rows.append(
                    {
                        **base,
                        "modality": m,
                        "label": lab,
                        "tp": int(tp[k]),
                        "fp": int(fp[k]),
                        "fn": int(fn[k]),
                        "support": int(tp[k] + fn[k]),
                        "precision": float(p[k]),
                        "recall": float(r[k]),
                        "f1": float(f[k]),
                    }
                )
            micro, macro = summary_f1(tp, fp, fn)
            reps = f1_replicates(TP, FP, FN, n_boot, seed) if cols else np.full((1, 2), np.nan)
            lo, hi = percentile_ci(reps, alpha)
            mp, mr, _ = _f1(tp.sum(), fp.sum(), fn.sum())
            support = (tp + fn) > 0
            for k, (name, value) in enumerate((("micro", micro), ("macro", macro))):
                rows.append(
                    {
                        **base,
                        "modality": "all",
                        "label": name,
                        "tp": int(tp.sum()),
                        "fp": int(fp.sum()),
                        "fn": int(fn.sum()),
                        "support": int((tp + fn).sum()),
                        "precision": float(mp)
                        if name == "micro"
                        else float(p[support].mean())
                        if support.any()
                        else np.nan,
                        "recall": float(mr)
                        if name == "micro"
                        else float(r[support].mean())
                        if support.any()
                        else np.nan,
                        "f1": value,
                        "ci_lo": float(lo[k]),
                        "ci_hi": float(hi[k]),
                    }
                )
    return pd.DataFrame(rows)


def paired_f1_difference(
    a: list[dict], b: list[dict], refs: dict[str, list[str]], n_boot: int, seed: int, alpha: float, reader=None
) -> dict:
    """Micro and macro label F1 of answers ``a`` minus those of ``b`` (same studies), with a paired study-level
    bootstrap interval: {"micro": (diff, lo, hi), "macro": (diff, lo, hi), "n": n}."""
    reader = reader or LabelReader()
    a = sorted(a, key=lambda r: r["study_id"])
    b = sorted(b, key=lambda r: r["study_id"])
    if [r["study_id"] for r in a] != [r["study_id"] for r in b]:
        raise ValueError("paired F1 needs the answers of both models for the same studies")
    mods = [r["modality"] for r in a]
    ref = [reader(refs[r["study_id"]], r["modality"]) for r in a]
    pa = [reader(answer_items(r), r["modality"]) for r in a]
    pb = [reader(answer_items(r), r["modality"]) for r in b]
    # shared columns: both label sets against the same reference
    cols_a, *_ = label_counts(pa, ref, mods)
    cols_b, *_ = label_counts(pb, ref, mods)
    cols = sorted(set(cols_a) | set(cols_b))

    def mats(pred):
        index = {c: k for k, c in enumerate(cols)}
        P, R = np.zeros((len(pred), len(cols))), np.zeros((len(pred), len(cols)))
        for i, (m, ps, rs) in enumerate(zip(mods, pred, ref)):
            for lab in ps:
                P[i, index[(m, lab)]] = 1
            for lab in rs:
                R[i, index[(m, lab)]] = 1
        return P * R, P * (1 - R), (1 - P) * R

    A, B = mats(pa), mats(pb)
    point = np.subtract(summary_f1(*(x.sum(0) for x in A)), summary_f1(*(x.sum(0) for x in B)))
    reps = []
    for idx in bootstrap_indices(len(a), n_boot, seed):
        fa = summary_f1(*(x[idx].sum(0) for x in A))
        fb = summary_f1(*(x[idx].sum(0) for x in B))
        reps.append(np.subtract(fa, fb))
    lo, hi = percentile_ci(np.asarray(reps).reshape(-1, 2), alpha)
    return {
        "micro": (float(point[0]), float(lo[0]), float(hi[0])),
        "macro": (float(point[1]), float(lo[1]), float(hi[1])),
        "n": len(a),
    }


def paired_mean_difference(x, y, n_boot: int, seed: int, alpha: float) -> tuple[float, float, float]:
    """mean(x - y) of paired per-study values with a study-level bootstrap interval."""
    d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    if d.size == 0:
        return float("nan"), float("nan"), float("nan")
    reps = np.array([d[i].mean() for i in bootstrap_indices(d.size, n_boot, seed)])[:, None]
    lo, hi = percentile_ci(reps, alpha)
    return float(d.mean()), float(lo[0]), float(hi[0])
