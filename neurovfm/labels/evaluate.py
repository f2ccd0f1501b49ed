"""Scores the extracted labels against the synthetic export's ground truth, on two report banks.

``development``: the labels the pipeline extracted from the export's reports (bank A, the wording the rules were
developed against). ``unseen``: every scored study's report written again by writer B
(``synth.reports_unseen``, its own phrase bank and house styles, seeded by the study) and read by the rule
extractor here; it measures how the rules hold on wording they were not tuned to.

Truth files are named by StudyInstanceUID; they are joined to our hashed study ids with the run's
de-identification key. Scored studies: truth says a report exists and ingest kept the study. A scored
study that is missing from the label table (an extraction error) counts as all-negative, so errors
cost recall instead of vanishing. ``macro`` averages over the labels with support > 0 in the truth
(a label never present cannot have a recall); ``micro`` pools every label, so false positives on
labels absent from the truth are counted there.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..ingest.deid import keyed_hash
from ..utils.atomic import write_csv
from .ontology import load_ontology

_FILES = {"CT": "ct.csv", "MR": "mri.csv"}
COLUMNS = ["modality", "label", "tp", "fp", "fn", "precision", "recall", "f1", "support"]
BANK_COLUMNS = ["bank"] + COLUMNS + ["n_reports"]


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def label_matrix(label_sets, names) -> np.ndarray:
    """bool [n, len(names)]: row i marks the labels named in ``label_sets[i]`` (an iterable of ontology names)."""
    col = {n: j for j, n in enumerate(names)}
    out = np.zeros((len(label_sets), len(names)), dtype=bool)
    for i, labels in enumerate(label_sets):
        out[i, [col[x] for x in labels]] = True
    return out


def score_matrix(truth: np.ndarray, pred: np.ndarray, names: list[str], modality: str) -> pd.DataFrame:
    """Per-label counts and scores plus macro and micro rows (``truth``/``pred``: studies x labels, 0/1)."""
    truth, pred = truth.astype(bool), pred.astype(bool)
    tp = (truth & pred).sum(0)
    fp = (~truth & pred).sum(0)
    fn = (truth & ~pred).sum(0)
    rows = []
    for j, name in enumerate(names):
        rows.append(
            {
                "modality": modality,
                "label": name,
                "tp": int(tp[j]),
                "fp": int(fp[j]),
                "fn": int(fn[j]),
                "precision": _ratio(tp[j], tp[j] + fp[j]),
                "recall": _ratio(tp[j], tp[j] + fn[j]),
                "f1": _ratio(2 * tp[j], 2 * tp[j] + fp[j] + fn[j]),
                "support": int(tp[j] + fn[j]),
            }
        )
    df = pd.DataFrame(rows, columns=COLUMNS)
    supported = df[df["support"] > 0]
    macro = {
        "modality": modality,
        "label": "macro",
        "tp": int(supported["tp"].sum()),
        "fp": int(supported["fp"].sum()),
        "fn": int(supported["fn"].sum()),
        "precision": float(supported["precision"].fillna(0.0).mean()),
        "recall": float(supported["recall"].mean()),
        "f1": float(supported["f1"].fillna(0.0).mean()),
        "support": int(supported["support"].sum()),
    }
    T, P, N = int(tp.sum()), int(fp.sum()), int(fn.sum())
    micro = {
        "modality": modality,
        "label": "micro",
        "tp": T,
        "fp": P,
        "fn": N,
        "precision": _ratio(T, T + P),
        "recall": _ratio(T, T + N),
        "f1": _ratio(2 * T, 2 * T + P + N),
        "support": T + N,
    }
    if supported.empty:
        for k in ("precision", "recall", "f1"):
            macro[k] = float("nan")
    return pd.concat([df, pd.DataFrame([macro, micro], columns=COLUMNS)], ignore_index=True)


def load_truth(truth_dir: str | Path, key: bytes) -> dict[str, dict]:
    """{hashed study id: truth record} for every truth JSON."""
    out = {}
    for path in sorted(Path(truth_dir).glob("*.json")):
        rec = json.loads(path.read_text(encoding="utf-8"))
        out[keyed_hash(str(rec["study_instance_uid"]), key, "study")] = rec
    return out


def _unseen_predictions(records: list[dict], names: list[str], modality: str) -> np.ndarray:
    """Rule-extractor labels of writer B's report of each truth record (seeded by the study UID)."""
    from neurovfm.synth.reports_unseen import from_truth, write_unseen_report

    from .rules import RuleExtractor

    rx = RuleExtractor()
    out = np.zeros((len(records), len(names)), dtype=bool)
    for i, rec in enumerate(records):
        seed = int.from_bytes(hashlib.sha256(str(rec["study_instance_uid"]).encode()).digest()[:8], "little")
        report = write_unseen_report(from_truth(rec), np.random.default_rng(seed))
        result = rx.extract(report.text, modality, str(rec.get("indication") or ""))
        out[i] = [result[n]["present"] for n in names]
    return out


def evaluate_extractor(
    labels_dir: str | Path,
    truth_dir: str | Path,
    studies_csv: str | Path,
    key: bytes,
    out_csv: str | Path | None = None,
    unseen: bool = True,
) -> pd.DataFrame:
    """Per-label scores of both banks (``bank`` column); ``unseen=False`` scores the development bank only."""
    truth = load_truth(truth_dir, key)
    studies = pd.read_csv(studies_csv, dtype={"study_id": str})
    ingested = set(studies["study_id"])
    frames = []
    for modality, fname in _FILES.items():
        onto = load_ontology(modality)
        path = Path(labels_dir) / fname
        pred_df = pd.read_csv(path, dtype={"study_id": str}).set_index("study_id") if path.is_file() else None
        ids = sorted(
            sid
            for sid, rec in truth.items()
            if rec.get("report_present", True)
            and sid in ingested
            and ("MR" if str(rec["modality"]).upper() in ("MR", "MRI") else "CT") == modality
        )
        t = np.zeros((len(ids), len(onto.names)), dtype=bool)
        p = np.zeros_like(t)
        col = {n: j for j, n in enumerate(onto.names)}
        for i, sid in enumerate(ids):
            for lab in truth[sid].get("labels", []):
                if lab not in col:
                    raise ValueError(f"truth of study {sid} has {lab!r}, not a {modality} diagnosis")
                t[i, col[lab]] = True
            if pred_df is not None and sid in pred_df.index:
                p[i] = pred_df.loc[sid, onto.names].to_numpy(dtype=int) > 0
        banks = [("development", p)]
        if unseen:
            banks.append(("unseen", _unseen_predictions([truth[sid] for sid in ids], onto.names, modality)))
        for bank, pred in banks:
            df = score_matrix(t, pred, onto.names, modality)
            df.insert(0, "bank", bank)
            df["n_reports"] = len(ids)
            frames.append(df)
    df = pd.concat(frames, ignore_index=True)[BANK_COLUMNS]
    if out_csv is not None:
        write_csv(out_csv, df)
    return df
