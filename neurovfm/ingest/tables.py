"""Write the ingest outputs (public tables, summary, private file list and reports), atomically and in a
deterministic row order, after checking that every file seen is either included or ledgered."""

from __future__ import annotations

import json
import os

import pandas as pd

from neurovfm.ingest.ledger import Ledger
from neurovfm.utils.atomic import atomic_open, write_csv, write_text

SERIES_COLUMNS = [
    "series_id",
    "study_id",
    "patient_id",
    "modality",
    "sequence",
    "orientation",
    "n_slices",
    "rows",
    "cols",
    "pixel_spacing_row",
    "pixel_spacing_col",
    "slice_spacing",
    "slice_thickness",
    "tilt_deg",
    "manufacturer",
    "field_strength",
    "series_description",
    "contrast",
    "split",
    "affine_lps",
    "stack",
]
STUDY_COLUMNS = [
    "study_id",
    "patient_id",
    "modality",
    "study_year",
    "age",
    "sex",
    "ethnicity",
    "site",
    "manufacturer",
    "field_strength",
    "n_series",
    "has_report",
    "split",
]
FILE_COLUMNS = ["file_id", "series_id", "slice_index", "path"]


class ReconciliationError(RuntimeError):
    """Files seen != files in included volumes + files in the ledger (a bug, never bad input)."""


def _counts(series: pd.Series) -> dict:
    return {str(k): int(v) for k, v in sorted(series.value_counts().items(), key=lambda kv: str(kv[0]))}


def summarise(
    vols: pd.DataFrame,
    studies: pd.DataFrame,
    ledger: Ledger,
    n_files_seen: int,
    n_files_included: int | None = None,
    **extra,
) -> dict:
    """Counts for summary.json. ``n_files_included`` defaults to the slices of the included volumes
    (one DICOM file per slice); NIfTI input passes its number of volumes."""
    n_included = n_files_included if n_files_included is not None else (int(vols["n_slices"].sum()) if len(vols) else 0)
    per_mod = {}
    mods = (set(studies["modality"]) if len(studies) else set()) | (set(vols["modality"]) if len(vols) else set())
    for mod in sorted(mods):
        v, s = vols[vols["modality"] == mod], studies[studies["modality"] == mod]
        per_mod[mod] = {
            "studies": len(s),
            "volumes": len(v),
            "slices": int(v["n_slices"].sum()),
            "sequences": _counts(v["sequence"]),
            "orientations": _counts(v["orientation"]),
            "study_splits": _counts(s["split"]),
            "patients": int(s["patient_id"].nunique()),
        }
    return {
        "n_files_seen": int(n_files_seen),
        "n_files_included": n_included,
        "n_files_excluded": ledger.n_files,
        "n_files_excluded_transient": ledger.n_transient,
        "n_volumes": len(vols),
        "n_studies": len(studies),
        "n_patients": int(studies["patient_id"].nunique()) if len(studies) else 0,
        "excluded_files_by_reason": ledger.files_by_reason(),
        "excluded_units_by_reason": ledger.units_by_reason(),
        "per_modality": per_mod,
        **extra,
    }


def write_outputs(
    out_dir: str,
    private_dir: str,
    vols: pd.DataFrame,
    studies: pd.DataFrame,
    ledger: Ledger,
    file_rows: list[dict],
    reports: list[dict],
    n_files_seen: int,
    **extra,
) -> dict:
    if len(vols) and "patient_id" not in vols.columns:
        vols = vols.merge(studies[["study_id", "patient_id"]], on="study_id", how="left")
    vols = (
        vols.reindex(columns=SERIES_COLUMNS).sort_values(["study_id", "series_id"], ignore_index=True)
        if len(vols)
        else pd.DataFrame(columns=SERIES_COLUMNS)
    )
    studies = (
        studies.reindex(columns=STUDY_COLUMNS).sort_values("study_id", ignore_index=True)
        if len(studies)
        else pd.DataFrame(columns=STUDY_COLUMNS)
    )
    summary = summarise(vols, studies, ledger, n_files_seen, **extra)
    if summary["n_files_included"] + summary["n_files_excluded"] != n_files_seen:
        raise ReconciliationError(
            f"{summary['n_files_included']} included + {summary['n_files_excluded']} ledgered files != "
            f"{n_files_seen} seen"
        )
    if len(file_rows) != summary["n_files_included"]:
        raise ReconciliationError(f"{len(file_rows)} rows for files.csv, {summary['n_files_included']} included")
    files = pd.DataFrame(file_rows, columns=FILE_COLUMNS).sort_values(["series_id", "slice_index"], ignore_index=True)
    os.makedirs(out_dir, exist_ok=True)
    os.makedirs(private_dir, exist_ok=True)
    write_csv(os.path.join(out_dir, "series.csv"), vols)
    write_csv(os.path.join(out_dir, "studies.csv"), studies)
    write_csv(os.path.join(out_dir, "exclusions.csv"), ledger.frame())
    write_csv(os.path.join(private_dir, "files.csv"), files)
    with atomic_open(os.path.join(private_dir, "reports.jsonl"), "w", encoding="utf-8") as fh:
        for row in sorted(reports, key=lambda r: r["study_id"]):
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    write_text(os.path.join(out_dir, "summary.json"), json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary
