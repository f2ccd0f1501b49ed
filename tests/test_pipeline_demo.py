"""End to end on the embedded health system: every input file is accounted for, no PHI reaches
results/, the ledger agrees with what the generator planted, labels agree with the ground truth."""

import json
import re
from pathlib import Path

import pandas as pd
import pydicom


def _planted_phi(export: Path) -> set[str]:
    """Every identifying header value the generator wrote (names, IDs, birth dates, accessions, addresses)."""
    values: set[str] = set()
    for path in (export / "dicom").rglob("*"):
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError):
            continue
        for tag in (
            "PatientName",
            "PatientID",
            "PatientBirthDate",
            "AccessionNumber",
            "PatientAddress",
            "OtherPatientIDs",
            "ReferringPhysicianName",
            "InstitutionAddress",
        ):
            value = ds.get(tag)
            if value in (None, ""):
                continue
            for part in re.split(r"[\^\\]", str(value)):
                if len(part.strip()) >= 4:
                    values.add(part.strip())
    reports = pd.read_csv(export / "reports.csv", dtype=str)
    for col in ("accession_number", "patient_id"):
        values.update(v for v in reports[col].dropna() if len(v) >= 4)
    return values


def test_no_phi_under_results(demo_run):
    export, res = demo_run["export"], demo_run["results"]
    phi = _planted_phi(export)
    assert len(phi) > 20, "the generator should plant PHI for this test to mean anything"
    leaks = []
    for path in res.rglob("*"):
        if not path.is_file() or export in path.parents:
            continue
        data = path.read_bytes()  # raw bytes: decoding binaries with errors="ignore" splices random letters
        leaks += [(str(path.relative_to(res)), v) for v in phi if v.encode() in data]
    assert not leaks, f"PHI found under results/: {leaks[:10]}"


def test_every_file_is_accounted_for(demo_run):
    export, res = demo_run["export"], demo_run["results"]
    n_files = sum(1 for p in (export / "dicom").rglob("*") if p.is_file())
    series = pd.read_csv(res / "ingest" / "series.csv")
    ledger = pd.read_csv(res / "ingest" / "exclusions.csv")
    summary = json.loads((res / "ingest" / "summary.json").read_text())
    assert summary["n_files_seen"] == n_files
    assert series["n_slices"].sum() + ledger["n_files"].sum() == n_files


def test_ledger_matches_planted_faults(demo_run):
    """Each series the generator planted as excluded for a reason shows up in the ledger with that reason."""
    export, res = demo_run["export"], demo_run["results"]
    ledger = pd.read_csv(res / "ingest" / "exclusions.csv", dtype=str)
    reasons_seen = set(ledger["reason"])
    expected = set()
    n_included = 0
    for truth in (export / "truth").glob("*.json"):
        for s in json.loads(truth.read_text())["series"]:
            if s["expected"].startswith("excluded:"):
                expected.add(s["expected"].split(":", 1)[1])
            else:
                n_included += 1
    series = pd.read_csv(res / "ingest" / "series.csv")
    assert expected <= reasons_seen, f"planted but not reported: {expected - reasons_seen}"
    assert len(series) >= n_included * 0.9


def test_labels_follow_truth(demo_run):
    table = pd.read_csv(demo_run["results"] / "labels" / "extractor_eval.csv")
    macro = table[table["label"] == "macro"].set_index("modality")["f1"]
    assert (macro > 0.9).all(), macro
