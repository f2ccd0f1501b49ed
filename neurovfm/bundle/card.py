"""The model card: ``model_card.json`` (machine-readable) and ``MODEL_CARD.md`` (the same content for people).

Counts come from the run's own tables (``ingest/studies.csv``, ``labels/{ct,mri}.csv``), per-class test AUROCs
with their bootstrap intervals from ``tables/diagnosis_{modality}_{encoder}.csv``; nothing is typed in by hand
except the statements of intended use and limits below.
"""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd

INTENDED_USE = [
    "Research use: reproducing the NeuroVFM analyses and trying the trained model on studies of the same "
    "health system, with the outputs read by a radiologist.",
    "Each output (diagnosis probabilities, attention maps, generated findings, triage level) is a model "
    "estimate to be checked against the images, never a diagnosis.",
]
LIMITS = [
    "Not a medical device; not validated for clinical decisions.",
    "Trained on one health system's studies in the date window below: scanners, protocols and populations "
    "elsewhere may behave differently (check calibration and thresholds on local data first).",
    "Thresholds were chosen on the validation split (Youden); classes with too few validation positives have "
    "no threshold and no calibration (listed as such).",
    "Classes with fewer test positives than the card's minimum are not scored; their probabilities are "
    "reported but have no measured accuracy.",
    "Generated findings come from a small language model and may omit or invent findings.",
]
SCORE_COLUMNS = ("label", "n_pos", "n_neg", "auroc", "auroc_lo", "auroc_hi", "status")


def _num(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return float(v) if isinstance(v, float) else v


def split_counts(studies: pd.DataFrame, labels: dict[str, pd.DataFrame]) -> dict:
    """Studies per split and modality (ingested), and labelled studies per split (the probes' data)."""
    out = {"studies": {}, "labelled": {}, "study_years": {}}
    for (split, mod), g in studies.groupby(["split", "modality"], sort=True):
        out["studies"].setdefault(str(split), {})[str(mod)] = int(len(g))
    for split, g in studies.groupby("split", sort=True):
        years = pd.to_numeric(g["study_year"], errors="coerce").dropna()
        if len(years):
            out["study_years"][str(split)] = [int(years.min()), int(years.max())]
    for mod, df in labels.items():
        for split, g in df.groupby("split", sort=True):
            out["labelled"].setdefault(str(split), {})[mod] = int(len(g))
    return out


def test_scores(table: pd.DataFrame) -> list[dict]:
    cols = [c for c in SCORE_COLUMNS if c in table.columns]
    return [{k: _num(r[k]) for k in cols} for r in table.to_dict("records")]


def model_card(cfg: dict, bundle_meta: dict, counts: dict, scores: dict[str, pd.DataFrame], built: str) -> dict:
    sp = cfg["splits"]
    return {
        "name": f"neurovfm {cfg['run']} ({bundle_meta['encoder']})",
        "built": built,
        "run": cfg["run"],
        "encoder": bundle_meta["encoder"],
        "encoder_architecture": bundle_meta["architecture"],
        "pretraining_steps": bundle_meta["pretraining_steps"],
        "report_generator": bundle_meta["report_generator"],
        "date_window": {
            "development_before": sp["cutoff"],
            "test_from": sp["cutoff"],
            "test_until": sp["test_end"],
            "study_years_by_split": counts["study_years"],
        },
        "training_data": {
            "studies_by_split_and_modality": counts["studies"],
            "labelled_studies_by_split": counts["labelled"],
        },
        "splits": {
            "validation_per_modality": int(sp["val_per_modality"]),
            "rule": "test: studies dated in the test window; validation: a patient-level hold-out of earlier "
            "studies; train: the rest (no patient in both train and validation)",
        },
        "test_auroc": {m: test_scores(t) for m, t in scores.items()},
        "test_auroc_settings": {
            "bootstrap_replicates": int(cfg["probes"]["eval"]["n_boot"]),
            "alpha": float(cfg["probes"]["eval"]["alpha"]),
            "min_test_positives": int(cfg["probes"]["eval"]["min_pos"]),
        },
        "intended_use": INTENDED_USE,
        "limits": LIMITS,
    }


def _fmt(v, digits=3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def markdown(card: dict) -> str:
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"Built {card['built']} from run `{card['run']}`.",
        "",
        "## Model",
        "",
        f"- Encoder: `{card['encoder']}` ({card['encoder_architecture']}), {card['pretraining_steps']} "
        "pretraining steps (Vol-JEPA)",
        f"- Report generator: {card['report_generator']}",
        "",
        "## Data",
        "",
        f"- Development studies dated before {card['date_window']['development_before']}; test studies dated "
        f"{card['date_window']['test_from']} to {card['date_window']['test_until']}",
        f"- Splits: {card['splits']['rule']}",
        "",
        "| split | CT studies | MR studies | labelled CT | labelled MRI | study years |",
        "|---|---|---|---|---|---|",
    ]
    td = card["training_data"]
    for split in sorted(td["studies_by_split_and_modality"]):
        s = td["studies_by_split_and_modality"][split]
        lab = td["labelled_studies_by_split"].get(split, {})
        years = card["date_window"]["study_years_by_split"].get(split)
        lines.append(
            f"| {split} | {s.get('CT', 0)} | {s.get('MR', 0)} | {lab.get('ct', 0)} | {lab.get('mri', 0)} | "
            f"{'-'.join(map(str, years)) if years else '—'} |"
        )
    st = card["test_auroc_settings"]
    lines += [
        "",
        "## Test AUROC per class",
        "",
        f"95% intervals: {st['bootstrap_replicates']} study-level bootstrap replicates; classes with fewer than "
        f"{st['min_test_positives']} test positives are not scored.",
        "",
    ]
    for mod, rows in card["test_auroc"].items():
        scored = [r for r in rows if r.get("auroc") is not None]
        lines += [
            f"### {mod.upper()} ({len(scored)} of {len(rows)} classes scored)",
            "",
            "| class | test positives | AUROC | 95% CI |",
            "|---|---|---|---|",
        ]
        for r in scored:
            lines.append(
                f"| {r['label']} | {r.get('n_pos', '—')} | {_fmt(r['auroc'])} | "
                f"{_fmt(r.get('auroc_lo'))}–{_fmt(r.get('auroc_hi'))} |"
            )
        lines.append("")
    lines += [
        "## Intended use",
        "",
        *[f"- {t}" for t in card["intended_use"]],
        "",
        "## Limits",
        "",
        *[f"- {t}" for t in card["limits"]],
        "",
    ]
    return "\n".join(lines)


def today() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
