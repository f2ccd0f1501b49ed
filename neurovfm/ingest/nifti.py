"""NIfTI input (public benchmarks): a folder of .nii/.nii.gz files and a CSV describing them.

CSV columns: ``file`` (relative to the folder) and ``subject_id`` required; optional ``study_id,
modality, sequence, age, sex, site, split``; every other column is a label, copied to
``out_dir/nifti_labels.csv`` (study_id, split, labels). Each file is one volume (one file = one
"slice" in the ledger arithmetic: included volumes + ledgered files = CSV rows + unlisted files).
Without a ``split`` column, studies are train except a seeded, patient-level validation hold-out of
``splits.val_per_modality`` per modality (there are no dates for a temporal test split).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os

import numpy as np
import pandas as pd

from neurovfm.ingest import geometry as geo
from neurovfm.ingest import inputs
from neurovfm.ingest.classify import sequence_family
from neurovfm.ingest.deid import cap_age, keyed_hash
from neurovfm.ingest.discover import walk
from neurovfm.ingest.ledger import Ledger
from neurovfm.ingest.splits import assign_splits
from neurovfm.ingest.tables import write_outputs
from neurovfm.utils.atomic import write_csv

log = logging.getLogger("neurovfm")

REQUIRED_COLUMNS = ("file", "subject_id")
KNOWN = {"file", "subject_id", "study_id", "modality", "sequence", "age", "sex", "site", "split"}
FAMILIES = {"ct", "ct_contrast", "t1", "t1c", "t2", "flair", "dwi", "swi", "other"}
SPLITS = {"train", "val", "test"}
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def ras_to_lps(affine_ras) -> np.ndarray:
    return LPS_FROM_RAS @ np.asarray(affine_ras, dtype=float)


def _is_nifti(name: str) -> bool:
    return name.endswith(".nii") or name.endswith(".nii.gz")


def _modality(value: str) -> str | None:
    v = (value or "").strip().upper()
    return {"MRI": "MR", "MR": "MR", "CT": "CT"}.get(v)


def _volume_row(path: str, modality: str, sequence_text: str, params: dict):
    """(row dict, None) or (None, (reason, detail))."""
    import nibabel as nib

    try:
        img = nib.load(path)
        shape = img.shape
    except (OSError, ValueError, EOFError, nib.filebasedimages.ImageFileError) as exc:
        return None, ("unreadable_nifti", f"could not be read ({type(exc).__name__})")
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        return None, ("not_3d", f"image has shape {tuple(shape)}")
    a = ras_to_lps(img.affine)
    ci, cj, ck = a[:3, 0], a[:3, 1], a[:3, 2]
    si, sj = float(np.linalg.norm(ci)), float(np.linalg.norm(cj))
    n = np.cross(ci, cj)
    if si < 1e-9 or sj < 1e-9 or np.linalg.norm(n) < 1e-12:
        return None, ("missing_geometry", "degenerate affine")
    n = n / np.linalg.norm(n)
    if shape[2] < params["min_slices"]:
        return None, ("too_few_slices", f"{shape[2]} slice(s), fewer than {params['min_slices']}")
    tilt = geo.tilt_deg([a[:3, 3], a[:3, 3] + ck], n)
    if tilt > params["max_tilt_deg"]:
        return None, ("excessive_tilt", f"slice axis {tilt:.1f} deg off the normal")
    seq = (sequence_text or "").strip().lower()
    family = seq if seq in FAMILIES else sequence_family(modality, sequence_text)
    return {
        "modality": modality,
        "sequence": family,
        "orientation": geo.orientation_label(n, params["oblique_deg"]),
        "n_slices": int(shape[2]),
        "rows": int(shape[1]),
        "cols": int(shape[0]),
        "pixel_spacing_row": round(sj, 6),
        "pixel_spacing_col": round(si, 6),
        "slice_spacing": round(abs(float(ck @ n)), 6),
        "slice_thickness": round(abs(float(ck @ n)), 6),
        "tilt_deg": round(tilt, 4),
        "manufacturer": "",
        "field_strength": None,
        "series_description": "",
        "contrast": int(family in ("t1c", "ct_contrast")),
        "stack": "",
        "affine_lps": json.dumps([round(float(v), 6) for v in a.ravel()]),
    }, None


def run_ingest_nifti(nifti_dir: str, nifti_csv: str, out_dir: str, private_dir: str, cfg: dict, key: bytes) -> dict:
    icfg, dcfg, scfg = cfg["ingest"], cfg["deid"], cfg["splits"]
    params = {
        "min_slices": int(icfg["min_slices"]),
        "max_tilt_deg": float(icfg["max_tilt_deg"]),
        "oblique_deg": float(icfg["oblique_deg"]),
    }
    df = pd.read_csv(inputs.table(nifti_csv, "input.nifti_csv", REQUIRED_COLUMNS), dtype=str, keep_default_na=False)
    label_cols = [c for c in df.columns if c not in KNOWN]
    ledger = Ledger()
    on_disk = {p for p in walk(nifti_dir)[0] if _is_nifti(p)}
    listed = set(df["file"])
    for p in sorted(on_disk - listed):
        ledger.add("file", "not_in_csv", 1, "NIfTI file not listed in the CSV", file_id=keyed_hash(p, key, "file"))
    n_seen = len(df) + len(on_disk - listed)

    vols, studies, files, labels = [], {}, [], []
    for _, row in df.sort_values("file", kind="stable").iterrows():
        rel = row["file"]
        fid = keyed_hash(rel, key, "file")
        study_key = row.get("study_id") or rel
        study_id = keyed_hash(study_key, key, "study")
        mod = _modality(row.get("modality", "MR") or "MR")
        if mod is None:
            ledger.add(
                "file", "unsupported_modality", 1, "modality column is not CT/MR", file_id=fid, study_id=study_id
            )
            continue
        path = os.path.join(nifti_dir, rel)
        if not os.path.isfile(path):
            ledger.add("file", "missing_file", 1, "listed in the CSV, not on disk", file_id=fid, study_id=study_id)
            continue
        vol, problem = _volume_row(path, mod, row.get("sequence", ""), params)
        series_id = keyed_hash(rel, key, "series")
        if problem:
            ledger.add("file", problem[0], 1, problem[1], file_id=fid, series_id=series_id, study_id=study_id)
            continue
        vol.update(series_id=series_id, study_id=study_id)
        vols.append(vol)
        files.append({"file_id": fid, "series_id": series_id, "slice_index": 0, "path": rel})
        if study_id not in studies:
            age = pd.to_numeric(row.get("age", ""), errors="coerce")
            sex = (row.get("sex", "") or "").strip().upper()[:1]
            studies[study_id] = {
                "study_id": study_id,
                "patient_id": keyed_hash(row["subject_id"], key, "patient"),
                "modality": mod,
                "study_year": None,
                "age": cap_age(None if pd.isna(age) else float(age), int(dcfg["age_cap"])),
                "sex": sex if sex in ("M", "F", "O") else "",
                "ethnicity": "",
                "site": row.get("site", ""),
                "manufacturer": "",
                "field_strength": None,
                "n_series": 0,
                "has_report": False,
                "split": (row.get("split", "") or "").strip().lower(),
                "study_date": dt.date(1900, 1, 1),
            }
            labels.append({"study_id": study_id, **{c: row[c] for c in label_cols}})
        studies[study_id]["n_series"] += 1

    st = pd.DataFrame(list(studies.values()))
    vol_df = pd.DataFrame(vols)
    if len(st):
        need = ~st["split"].isin(SPLITS)
        if need.any():
            st.loc[need, "split"] = assign_splits(
                st[need],
                "2999-01-01",
                "2999-12-31",
                int(scfg["val_per_modality"]),
                int(cfg["seed"]),
                float(scfg["max_val_fraction"]),
            )
        vol_df["split"] = vol_df["study_id"].map(dict(zip(st["study_id"], st["split"])))
    inputs.require_volumes(n_seen, len(vol_df), ledger.files_by_reason(), bool(icfg["allow_empty"]), "NIfTI")
    summary = write_outputs(
        out_dir,
        private_dir,
        vol_df,
        st,
        ledger,
        files,
        [],
        n_files_seen=n_seen,
        n_files_included=len(vols),
        input_kind="nifti",
    )
    lab = pd.DataFrame(labels, columns=["study_id", *label_cols])
    if len(lab):
        lab["split"] = lab["study_id"].map(dict(zip(st["study_id"], st["split"])))
        lab = lab[["study_id", "split", *label_cols]].sort_values("study_id", ignore_index=True)
    write_csv(os.path.join(out_dir, "nifti_labels.csv"), lab)
    return summary
