"""Planted PHI (headers, folder names, descriptions, report text) never reaches the public outputs."""

from __future__ import annotations

import json
import os

import pandas as pd
from dicom_factory import Spec, Study, write_series

from neurovfm.ingest.run import run_ingest
from neurovfm.config import default_config

CFG = default_config(
    **{
        "seed": 5,
        "ingest": {"min_slices": 5, "max_tilt_deg": 30.0, "spacing_tolerance": 0.1, "exclude_description_patterns": []},
        "deid": {"age_cap": 90},
        "splits": {"cutoff": "2023-06-01", "test_end": "2024-05-31", "val_per_modality": 1},
    }
)

PLANTED = {
    "family": "Zyxwvut",
    "given": "Quentinella",
    "mrn": "MRN98765432",
    "accession": "ACC55555123",
    "street": "77 Sunset Boulevard",
    "city": "Ypsilantiville",
    "dob": "19251231",
}
DOB_SPELLINGS = ["19251231", "1925-12-31", "12/31/1925", "December 31, 1925", "31.12.1925"]


def test_no_phi_in_outputs(tmp_path):
    st = Study(
        patient_name=f"{PLANTED['family']}^{PLANTED['given']}",
        patient_id=PLANTED["mrn"],
        birth_date=PLANTED["dob"],
        accession=PLANTED["accession"],
        address=f"{PLANTED['street']}, {PLANTED['city']}",
        study_date="20200601",
    )
    root = tmp_path / "in"
    folder = f"{PLANTED['family']}_{PLANTED['given']}_{PLANTED['mrn']}/{PLANTED['accession']}"
    write_series(str(root), Spec(description=f"AX T2 {PLANTED['family']} {PLANTED['mrn']}"), st, folder=folder + "/1")
    write_series(str(root), Spec(description="bad", n=2), st, folder=folder + "/2")  # excluded: ledger
    (root / folder / "README_Zyxwvut.txt").write_text("notes")  # not DICOM: ledger, by hash only
    report = (
        f"Patient {PLANTED['given']} {PLANTED['family'].upper()} (MRN {PLANTED['mrn']}, DOB 12/31/1925, "
        f"lives at {PLANTED['street']}, {PLANTED['city']}), accession {PLANTED['accession']}, born "
        f"December 31, 1925. FINDINGS: no acute intracranial abnormality."
    )
    pd.DataFrame(
        [
            {
                "accession_number": PLANTED["accession"],
                "patient_id": PLANTED["mrn"],
                "indication": f"headache, {PLANTED['family']}",
                "report_text": report,
            }
        ]
    ).to_csv(tmp_path / "reports.csv", index=False)
    out = tmp_path / "out"
    summary = run_ingest(
        str(root), str(tmp_path / "reports.csv"), str(out), str(tmp_path / "priv"), CFG, b"phi-key", workers=1
    )
    assert summary["n_volumes"] == 1 and summary["report_counts"]["reports_matched"] == 1

    needles = [v.lower() for v in PLANTED.values()] + [s.lower() for s in DOB_SPELLINGS]
    n_checked = 0
    for dirpath, _, names in os.walk(out):
        for name in names:
            text = (name + open(os.path.join(dirpath, name), encoding="utf-8", errors="replace").read()).lower()
            n_checked += 1
            for needle in needles:
                assert needle not in text, f"{needle!r} found in {name}"
    assert n_checked >= 4

    # the private report text is scrubbed of the same identifiers but keeps the findings
    rows = [json.loads(line) for line in (tmp_path / "priv" / "reports.jsonl").read_text().splitlines()]
    assert len(rows) == 1
    text = (rows[0]["report_text"] + rows[0]["indication"]).lower()
    for needle in needles:
        assert needle not in text
    assert "no acute intracranial abnormality" in text and "headache" in text
    studies = pd.read_csv(out / "studies.csv")
    assert studies["age"].tolist() == [90.0]  # 94 at the study, capped
    assert studies["study_year"].tolist() == [2020]
    series = pd.read_csv(out / "series.csv")
    assert series["series_description"].tolist() == ["AX T2 [REDACTED] [REDACTED]"]
