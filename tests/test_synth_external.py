"""The demo's external dataset: written as NIfTI + subjects.csv that the project's NIfTI ingest reads
with the geometry the renderer used."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from neurovfm import pipeline
from neurovfm.config import default_config
from neurovfm.ingest.nifti import ras_to_lps
from neurovfm.ingest.nifti import run_ingest_nifti


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("external")
    cfg = default_config()
    cfg["analysis"]["external"]["synthetic"].update(
        n_subjects=5, rescan_fraction=0.6, matrix=[48], planes=["sagittal", "axial", "coronal"]
    )
    out = tmp / "site_b"
    summary = pipeline.synth_external(cfg, out, dataset="site_b")
    return cfg, out, summary, tmp


def test_layout_and_labels(external):
    cfg, out, summary, _ = external
    table = pd.read_csv(out / "subjects.csv")
    assert summary["n_scans"] == len(table) and summary["n_rescanned"] >= 1
    assert table["subject_id"].nunique() == 5 and table["study_id"].is_unique
    assert set(table.columns) >= {
        "file",
        "subject_id",
        "study_id",
        "modality",
        "sequence",
        "age",
        "atrophy",
        "meningioma",
        "brain_age",
    }
    assert np.allclose(table["brain_age"], table["age"])
    for f in table["file"]:
        assert (out / f).is_file()
    # the labels follow the rendered findings
    manifest = {m["file"]: m for m in summary["files"]}
    for _, row in table.iterrows():
        finding = manifest[row["file"]]["finding"]
        assert row["atrophy"] == int(finding == "atrophy") and row["meningioma"] == int(finding == "meningioma")
    with pytest.raises(ValueError, match="no synthetic external dataset"):
        pipeline.synth_external(cfg, out.parent / "other", dataset="other")


def test_nifti_ingest_reads_geometry(external):
    cfg, out, summary, tmp = external
    key = b"test-key"
    res = run_ingest_nifti(str(out), str(out / "subjects.csv"), tmp / "ingest", tmp / "private", cfg, key)
    series = pd.read_csv(tmp / "ingest" / "series.csv")
    studies = pd.read_csv(tmp / "ingest" / "studies.csv")
    files = pd.read_csv(tmp / "private" / "files.csv")
    assert len(series) == summary["n_scans"] and res is not None
    path_of = dict(zip(files["series_id"], files["path"]))
    manifest = {m["file"]: m for m in summary["files"]}
    for _, s in series.iterrows():
        m = manifest[path_of[s["series_id"]]]
        img = nib.load(out / m["file"])
        lps = np.asarray(m["affine_lps"])
        assert np.allclose(ras_to_lps(img.affine), lps, atol=1e-4)
        assert np.allclose(np.asarray(json.loads(s["affine_lps"])).reshape(4, 4), lps, atol=1e-4)
        k, j, i = m["shape_kji"]
        assert img.shape == (i, j, k)
        assert (s["n_slices"], s["rows"], s["cols"]) == (k, j, i)
        assert s["orientation"] == m["plane"] and s["sequence"] == "t1" and s["modality"] == "MR"
        assert s["slice_spacing"] == pytest.approx(4.0, abs=1e-3)
        assert s["pixel_spacing_row"] == pytest.approx(240 / 48, abs=1e-3)
    # one patient per subject, one study per session; labels copied next to the metadata
    table = pd.read_csv(out / "subjects.csv")
    assert studies["patient_id"].nunique() == table["subject_id"].nunique()
    assert len(studies) == len(table)
    labels = pd.read_csv(tmp / "ingest" / "nifti_labels.csv")
    assert set(labels.columns) >= {"study_id", "split", "atrophy", "meningioma", "brain_age"}


def test_workflow_ingest_step_reads_nifti_input(external):
    """The workflow's own ingest step with ``input.kind: nifti`` (the path a hospital with NIfTI exports uses)."""
    cfg, out, summary, tmp = external
    cfg = default_config(
        input={"kind": "nifti", "nifti_dir": str(out), "nifti_csv": str(out / "subjects.csv")}, run="demo"
    )
    pipeline.ingest(cfg, None, None, tmp / "step" / "ingest", tmp / "step" / "private")
    series = pd.read_csv(tmp / "step" / "ingest" / "series.csv")
    assert len(series) == summary["n_scans"] and set(series["modality"]) == {"MR"}


def test_two_worker_processes_write_the_same_files(external):
    """The subjects are rendered in worker processes in any order; every file and the tables are byte-identical."""
    cfg, out, summary, tmp = external
    again = tmp / "site_b_2w"
    summary2 = pipeline.synth_external(cfg, again, dataset="site_b", workers=2)
    assert summary2 == summary
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((out / f).read_bytes() == (again / f).read_bytes() for f in files)
