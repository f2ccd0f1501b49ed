"""Every kind of bad input gets its ledger reason; files seen = files included + files ledgered."""

from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import pydicom
import pytest

from neurovfm.config import default_config
from dicom_factory import (
    BASIC_TEXT_SR,
    CR_SOP,
    ENHANCED_MR_SOP,
    PDF_SOP,
    SECONDARY_CAPTURE,
    Spec,
    Study,
    truncate,
    write_dicomdir,
    write_non_image,
    write_raw,
    write_series,
)
from pydicom.uid import ImplicitVRLittleEndian, generate_uid

from neurovfm.ingest.discover import read_header
from neurovfm.ingest.run import run_ingest

CFG = default_config(
    **{
        "seed": 3,
        "ingest": {
            "min_slices": 8,
            "max_tilt_deg": 30.0,
            "spacing_tolerance": 0.1,
            "exclude_description_patterns": ["mip", "adc", "screen ?save", "3-plane"],
        },
        "deid": {"age_cap": 90},
        "splits": {"cutoff": "2023-06-01", "test_end": "2024-05-31", "val_per_modality": 0},
    }
)


def _export(root: str) -> dict:
    """Write an export with one instance of each fault; returns {name: expected outcome}."""
    st = Study()
    late = Study(patient_id="MRN0002", patient_name="Roe^Rick", accession="ACC0002", study_date="20250301")
    undated = Study(patient_id="MRN0003", patient_name="Poe^Pat", accession="ACC0003", study_date="")
    exp = {}
    write_series(root, Spec(description="AX T2"), st, folder="good")
    exp["good"] = ("included", 12)
    p = write_series(root, Spec(description="AX FLAIR"), st, folder="raw")
    ds = pydicom.dcmread(p[3])
    os.remove(p[3])
    write_raw(p[3] + "_raw", ds)
    exp["raw"] = ("included", 12)
    p = write_series(root, Spec(description="SAG T1"), st, folder="trunc")
    truncate(p[-1], 20)
    exp["trunc"] = ("included", 11)
    p = write_series(root, Spec(description="AX DWI", transfer_syntax=ImplicitVRLittleEndian), st, folder="trunc_impl")
    truncate(p[0], 7)
    exp["trunc_impl"] = ("included", 11)
    p = write_series(root, Spec(description="AX SWI"), st, folder="missing")
    os.remove(p[5])
    exp["missing"] = ("missing_slices", 11)
    spec = Spec(description="COR T2", plane="coronal")
    pos = spec.positions()
    write_series(
        root, spec, st, folder="irregular", per_slice={6: {"ImagePositionPatient": list(pos[6] + 0.6 * spec.step())}}
    )
    exp["irregular"] = ("irregular_spacing", 12)
    p = write_series(root, Spec(description="AX T1"), st, folder="dup")
    shutil.copy(p[2], p[2] + "_copy")
    exp["dup"] = ("included", 12)
    write_series(root, Spec(description="AX T1 post"), st, folder="dims", per_slice={4: {"PixelSpacing": [1.2, 1.2]}})
    exp["dims"] = ("inconsistent_dimensions", 12)
    write_series(root, Spec(description="Survey", n=3), st, folder="loc")
    write_series(root, Spec(description="AX", n=9, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")), st, folder="loc2")
    exp["loc"] = ("localizer", 12)
    write_series(root, Spec(description="AX MIP"), st, folder="derived")
    write_series(root, Spec(description="AX T2 reformat", image_type=("DERIVED", "SECONDARY")), st, folder="derived2")
    exp["derived"] = ("derived", 24)
    write_series(root, Spec(description="AX T2", n=4), st, folder="few")
    exp["few"] = ("too_few_slices", 4)
    write_series(
        root,
        Spec(description="AX T2"),
        st,
        folder="mixed",
        per_slice={3: {"ImageOrientationPatient": [1, 0, 0, 0, 0, -1]}},
    )
    exp["mixed"] = ("mixed_orientations", 12)
    write_series(root, Spec(description="AX T2"), st, folder="nogeo", per_slice={2: {"ImagePositionPatient": None}})
    exp["nogeo"] = ("missing_geometry", 12)
    uid = generate_uid()
    write_series(root, Spec(description="AX PD", series_uid=uid), st, folder="twins/a")
    write_series(root, Spec(description="AX PD", series_uid=uid), st, folder="twins/b")
    exp["twins"] = ("duplicate_positions", 24)
    uid = generate_uid()
    write_series(root, Spec(description="AX T2 DE", series_uid=uid, extra={"EchoNumbers": 1}), st, folder="echo/1")
    write_series(root, Spec(description="AX T2 DE", series_uid=uid, extra={"EchoNumbers": 2}), st, folder="echo/2")
    exp["echo"] = ("included", 24)
    write_series(root, Spec(description="AX T2"), late, folder="late")
    exp["late"] = ("after_test_window", 12)
    write_series(root, Spec(description="AX T2"), undated, folder="undated")
    exp["undated"] = ("no_study_date", 12)
    write_series(root, Spec(modality="CT", description="HEAD", tilt_deg=45.0), st, folder="tilt")
    exp["tilt"] = ("excessive_tilt", 12)
    # single-file faults
    with open(os.path.join(root, "good", "notes.txt"), "w") as fh:
        fh.write("not a dicom file\n")
    with open(os.path.join(root, "corrupt.dcm"), "wb") as fh:
        fh.write(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f" + os.urandom(64))
    write_dicomdir(os.path.join(root, "DICOMDIR"))
    write_non_image(os.path.join(root, "other", "sr.dcm"), BASIC_TEXT_SR, "SR", st)
    write_non_image(os.path.join(root, "other", "pdf.dcm"), PDF_SOP, "DOC", st)
    write_non_image(os.path.join(root, "other", "sc.dcm"), SECONDARY_CAPTURE, "OT", st)
    write_series(root, Spec(modality="CR", sop_class=CR_SOP, n=1, description="XR SKULL"), st, folder="cr")
    write_series(root, Spec(sop_class=ENHANCED_MR_SOP, n=1, description="3D T1"), st, folder="enh")
    os.symlink(root, os.path.join(root, "loop"))  # a link loop must not trap the walk
    return exp


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    root = str(tmp / "in")
    os.makedirs(root)
    exp = _export(root)
    summary = run_ingest(root, None, str(tmp / "out"), str(tmp / "priv"), CFG, b"k", workers=1)
    return tmp, exp, summary


def _regular_files(root):
    n = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        n += sum(1 for f in filenames if not os.path.islink(os.path.join(dirpath, f)))
    return n


def test_reconciliation(run):
    tmp, _, summary = run
    series = pd.read_csv(tmp / "out" / "series.csv")
    ledger = pd.read_csv(tmp / "out" / "exclusions.csv")
    files = pd.read_csv(tmp / "priv" / "files.csv")
    n_disk = _regular_files(tmp / "in")
    assert summary["n_files_seen"] == n_disk
    assert series["n_slices"].sum() + ledger["n_files"].sum() == n_disk
    assert len(files) == series["n_slices"].sum()
    assert summary["symlinks_skipped"] == 1


def test_reasons(run):
    tmp, exp, summary = run
    by_reason = summary["excluded_files_by_reason"]
    expected = {
        "not_dicom": 1,
        "unreadable_dicom": 1,
        "dicomdir": 1,
        "non_image_sop_class": 3,
        "unsupported_modality": 1,
        "multiframe_unsupported": 1,
        "truncated_pixel_data": 2,
        "duplicate_instance": 1,
    }
    for name, (outcome, n) in exp.items():
        if outcome != "included":
            expected[outcome] = expected.get(outcome, 0) + n
    assert by_reason == expected
    series = pd.read_csv(tmp / "out" / "series.csv")
    included = sorted(n for o, n in exp.values() if o == "included")
    # the echo series splits into two 12-slice stacks
    assert sorted(series["n_slices"]) == sorted([n for n in included if n != 24] + [12, 12])
    stacks = sorted(s for s in series["stack"].dropna())
    assert stacks == ["EchoNumbers=1", "EchoNumbers=2"]
    ledger = pd.read_csv(tmp / "out" / "exclusions.csv")
    assert set(ledger[ledger["reason"] == "after_test_window"]["unit"]) == {"study"}
    assert ledger["detail"].notna().all()


def test_read_header_reasons(tmp_path):
    st = Study()
    p = write_series(str(tmp_path), Spec(n=2), st, folder="s")
    assert read_header(str(tmp_path), os.path.relpath(p[0], tmp_path))["reason"] is None
    truncate(p[1], 1)
    rec = read_header(str(tmp_path), os.path.relpath(p[1], tmp_path))
    assert rec["reason"] == "truncated_pixel_data"
    (tmp_path / "empty").write_bytes(b"")
    assert read_header(str(tmp_path), "empty")["reason"] == "not_dicom"
    # header cut short before the pixel data
    data = open(p[0], "rb").read()
    (tmp_path / "cut").write_bytes(data[:400])
    assert read_header(str(tmp_path), "cut")["reason"] in ("truncated_pixel_data", "unreadable_dicom")


def test_parallel_run_identical(run, tmp_path):
    tmp, _, _ = run
    run_ingest(str(tmp / "in"), None, str(tmp_path / "out"), str(tmp_path / "priv"), CFG, b"k", workers=2)
    for name in ("series.csv", "studies.csv", "exclusions.csv", "summary.json"):
        assert (tmp / "out" / name).read_bytes() == (tmp_path / "out" / name).read_bytes(), name
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["n_files_seen"] > 0


def test_load_series_volume_errors(tmp_path):
    import numpy as np

    from neurovfm.ingest.volume import VolumeError, load_series_volume

    spec = Spec(n=3, slope=2.0, intercept=-5.0)
    p = write_series(str(tmp_path), spec, Study(), folder="v")
    vol = load_series_volume(p, spec.affine())
    np.testing.assert_array_equal(vol[2], spec.pixels(2).astype(np.float32) * 2 - 5)
    with pytest.raises(VolumeError, match="position"):
        load_series_volume(p[::-1], spec.affine())  # order disagrees with the affine
    truncate(p[1], 30)
    with pytest.raises(VolumeError, match="slice 1"):
        load_series_volume(p, spec.affine())
