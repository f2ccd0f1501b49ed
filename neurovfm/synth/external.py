"""A second synthetic site written as a public-benchmark-style dataset: NIfTI volumes plus a CSV of
subject labels (the demo's stand-in for ADNI / OpenBHB-like external benchmarks).

Each subject is a phantom patient (``synth.phantom.build_patient``) of a true age drawn from
``age_range`` -- the phantom's age-related atrophy and ventricular enlargement make brain age
learnable -- and at most one finding the renderer draws (config ``diagnoses``: finding kind -> share
of subjects; the rest are controls). Every scan is a T1-weighted MR volume on this site's own scanner
(field strength, gain, matrix, field of view, slice thickness, acquisition plane); a share of the
subjects (``rescan_fraction``) has a second session with a new head position.

Output (``out_dir``): ``nifti/sub-XXX_ses-N_T1w.nii.gz`` (RAS affine, as NIfTI stores it) and
``subjects.csv`` in the form ``ingest.nifti.run_ingest_nifti`` reads (``file, subject_id, study_id,
modality, sequence, age, sex, site``; every other column is a label: one 0/1 column per diagnosis
and ``brain_age``, the true age), plus ``manifest.json`` with the scanner (manufacturer, field
strength: not CSV columns, which the ingest would read as labels) and each file's acquisition (LPS
affine, plane, matrix) for tests.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from neurovfm.synth.workers import ordered_map
from neurovfm.utils.atomic import atomic_open, write_csv
from neurovfm.utils.progress import Progress

log = logging.getLogger("neurovfm")

RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
_COVERAGE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}  # head extent (x, y, z) along the slice normal


def _rng(seed: int, index: int, what: str) -> np.random.Generator:
    tag = int.from_bytes(("ext-" + what).encode()[:8].ljust(8, b"\0"), "little")
    return np.random.default_rng(np.random.SeedSequence([seed, index, tag]))


def _acquisition(patient, plane: str, matrix: int, fov_mm: float, slice_mm: float, rng, margin_mm: float = 10.0):
    from neurovfm.synth.geometry import Acquisition

    coverage = patient.head_extent_mm[_COVERAGE_AXIS[plane]] + 2 * margin_mm
    n_slices = int(math.ceil(coverage / slice_mm))
    px = fov_mm / matrix
    centre = np.asarray(patient.head_center_lps) + rng.uniform(-4.0, 4.0, 3)
    return Acquisition(
        plane=plane,
        rows=matrix,
        cols=matrix,
        n_slices=n_slices,
        pixel_spacing=(px, px),
        slice_thickness=slice_mm,
        spacing_between_slices=slice_mm,
        center_lps=tuple(float(v) for v in centre),
        oblique_deg=tuple(float(v) for v in rng.uniform(-3.0, 3.0, 3)),
    )


def nifti_image(volume: np.ndarray, voxel_to_lps: np.ndarray):
    """A NIfTI image of a (slices, rows, cols) volume whose (column, row, slice) -> LPS affine is given."""
    import nibabel as nib

    data = np.ascontiguousarray(np.transpose(volume, (2, 1, 0)))  # (i = column, j = row, k = slice)
    img = nib.Nifti1Image(data, RAS_FROM_LPS @ voxel_to_lps)
    img.header.set_xyzt_units("mm")
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    return img


def _subject(index: int, ecfg: dict, seed: int) -> dict:
    rng = _rng(seed, index, "subject")
    lo, hi = (float(v) for v in ecfg["age_range"])
    kinds = list(ecfg["diagnoses"])
    shares = np.array([float(ecfg["diagnoses"][k]) for k in kinds])
    if shares.sum() > 1.0 + 1e-9:
        raise ValueError(f"diagnosis shares sum to {shares.sum():.2f} > 1: {ecfg['diagnoses']}")
    draw = rng.choice(len(kinds) + 1, p=np.r_[shares, 1.0 - shares.sum()])
    return {
        "subject_id": f"sub-{index + 1:03d}",
        "age": round(float(rng.uniform(lo, hi)), 1),
        "sex": "F" if rng.random() < 0.5 else "M",
        "finding": kinds[draw] if draw < len(kinds) else None,
        "n_sessions": 2 if rng.random() < float(ecfg["rescan_fraction"]) else 1,
    }


def _write_subject(i: int, ecfg: dict, seed: int, out: Path) -> tuple[list[dict], list[dict]]:
    """Render and write subject ``i``'s sessions; returns their subjects.csv rows and manifest entries (a worker
    job: each subject has random streams of its own, so the output does not depend on the number of workers)."""
    from neurovfm.synth.phantom import build_patient, render

    subj = _subject(i, ecfg, seed)
    rng = _rng(seed, i, "render")
    scanner = {"field_strength": float(ecfg["field_strength"]), "scale": float(ecfg["gain"])}
    findings = [{"kind": subj["finding"]}] if subj["finding"] else []
    patient = build_patient(rng, subj["age"], subj["sex"], findings, variation_mm=float(ecfg["anatomy_variation_mm"]))
    rows, manifest = [], []
    for ses in range(1, subj["n_sessions"] + 1):
        plane = str(rng.choice(ecfg["planes"]))
        acq = _acquisition(
            patient, plane, int(rng.choice(ecfg["matrix"])), float(ecfg["fov_mm"]), float(ecfg["slice_mm"]), rng
        )
        vol = render(patient, "MR", "t1", acq, rng, scanner=scanner)
        vol = np.clip(np.rint(vol), 0, np.iinfo(np.int16).max).astype(np.int16)
        rel = f"nifti/{subj['subject_id']}_ses-{ses}_T1w.nii.gz"
        nifti_image(vol, acq.voxel_to_lps()).to_filename(str(out / rel))
        row = {
            "file": rel,
            "subject_id": subj["subject_id"],
            "study_id": f"{subj['subject_id']}_ses-{ses}",
            "modality": "MR",
            "sequence": "t1",
            "age": subj["age"],
            "sex": subj["sex"],
            "site": ecfg["site"],
        }
        row.update({k: int(subj["finding"] == k) for k in ecfg["diagnoses"]})
        row["brain_age"] = subj["age"]
        rows.append(row)
        manifest.append(
            {
                "file": rel,
                "plane": plane,
                "shape_kji": list(vol.shape),
                "affine_lps": acq.voxel_to_lps().round(6).tolist(),
                "finding": subj["finding"],
                "finding_side": (patient.findings[0].get("side") if patient.findings else None),
            }
        )
    patient.clear_cache()
    return rows, manifest


def write_external(
    out_dir: str | Path, ecfg: dict, seed: int, progress_every_s: float = 10.0, workers: int = 1
) -> dict:
    """Render the dataset described by ``ecfg`` (config ``analysis.external.synthetic``) into ``out_dir``, with
    ``workers`` processes (the files do not depend on their number)."""
    from neurovfm.synth.catalog import CATALOG

    unknown = [k for k in ecfg["diagnoses"] if k not in CATALOG]
    if unknown:
        raise KeyError(f"diagnoses {unknown} are not finding kinds the renderer draws ({sorted(CATALOG)})")
    out = Path(out_dir)
    (out / "nifti").mkdir(parents=True, exist_ok=True)
    rows, manifest = [], []
    n = int(ecfg["n_subjects"])
    prog = Progress(n, "external site", log, every_s=progress_every_s, unit="subjects")
    for sub_rows, sub_manifest in ordered_map(_write_subject, [(i, ecfg, seed, out) for i in range(n)], workers):
        rows += sub_rows
        manifest += sub_manifest
        prog.update()
    prog.close()
    table = pd.DataFrame(rows)
    write_csv(out / "subjects.csv", table)
    rescanned = int((table.groupby("subject_id").size() > 1).sum())
    summary = {
        "n_subjects": n,
        "n_scans": len(rows),
        "n_rescanned": rescanned,
        "diagnoses": {k: int(table.groupby("subject_id")[k].max().sum()) for k in ecfg["diagnoses"]},
        "seed": seed,
        "config": ecfg,
        "files": manifest,
    }
    with atomic_open(out / "manifest.json") as fh:
        json.dump(summary, fh, indent=1)
    return summary
