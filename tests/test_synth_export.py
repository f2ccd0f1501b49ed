"""The synthetic PACS export: real DICOM files, correct geometry, planted defects, determinism."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from neurovfm.synth import bad_inputs as bad
from neurovfm.synth import dicom_writer as dw
from neurovfm.synth.cohort import build_cohort
from neurovfm.config import default_config
from neurovfm.synth.export import synth_settings, write_export
from neurovfm.synth.geometry import Acquisition

ROOT = Path(__file__).resolve().parents[1]
PHI_TAGS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "AccessionNumber",
    "PatientAddress",
    "OtherPatientIDs",
    "ReferringPhysicianName",
    "InstitutionAddress",
)


def tiny_cfg(n_studies: int = 6) -> dict:
    cfg = synth_settings(default_config())
    cfg.update(n_studies=n_studies, mr_matrix=[32], ct_matrix=[32], max_slices=16, mprage_fraction=0.0, bad_inputs=True)
    return cfg


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    out = tmp_path_factory.mktemp("export1")
    manifest = write_export(out, tiny_cfg(), seed=11, workers=1)
    return out, manifest


def _truths(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "truth").glob("*.json"))]


def _files(out: Path) -> list[Path]:
    return sorted(p for p in (out / "dicom").rglob("*") if p.is_file())


def _digest(out: Path) -> dict[str, str]:
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


# --- writer geometry against the Acquisition and SimpleITK -----------------------------------------
@pytest.mark.parametrize(
    "plane,reverse,tilt",
    [("axial", False, 0.0), ("sagittal", True, 0.0), ("coronal", False, 0.0), ("axial", True, 0.0)],
)
def test_header_geometry_matches_acquisition_and_simpleitk(tmp_path, plane, reverse, tilt):
    plans = build_cohort(tiny_cfg(2), seed=3)
    study = plans[0]
    acq = Acquisition(
        plane=plane,
        rows=24,
        cols=20,
        n_slices=12,
        pixel_spacing=(0.9, 1.1),
        slice_thickness=3.0,
        spacing_between_slices=3.5,
        center_lps=(4.0, -7.0, 12.0),
        oblique_deg=(6.0, -3.0, 2.0),
        gantry_tilt_deg=tilt,
        reverse_order=reverse,
    )

    class S:  # minimal series plan
        number, description, modality, image_type = 3, "AX T2", "MR", ("ORIGINAL", "PRIMARY", "M")
        acqs, contrast_agent, timing, b_value, kernel = [acq], None, (5000.0, 100.0, None), None, None

    vol = np.random.default_rng(0).uniform(0, 1, (12, 24, 20)).astype(np.float32)
    base = dw.patient_study_attrs(study, "1.2.3", "addr")
    sops = [dw.make_uid(1, "t", k) for k in range(12)]
    paths = []
    for k, ds in enumerate(dw.image_datasets(study, S, vol, base, "1.2.3.4", "1.2.3.5", sops, (100.0, 200.0))):
        paths.append(tmp_path / f"f{(k * 7) % 12:02d}")
        dw.write_dataset(ds, paths[-1])
    a = acq.voxel_to_lps()
    read = [pydicom.dcmread(p) for p in paths]
    for k, ds in enumerate(read):
        assert ds.InstanceNumber == k + 1
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], (a @ [0, 0, k, 1])[:3], atol=1e-4)
        np.testing.assert_allclose(
            [float(v) for v in ds.ImageOrientationPatient], np.r_[a[:3, 0] / 1.1, a[:3, 1] / 0.9], atol=1e-6
        )
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx([0.9, 1.1])
        stored = ds.pixel_array
        assert stored.shape == (24, 20)
    # SimpleITK sorts the slices along the normal; its geometry must be the sorted acquisition's
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(tmp_path))
    reader.SetFileNames(names)
    img = reader.Execute()
    assert img.GetSize() == (20, 24, 12)
    step = a[:3, 2]
    first = a[:3, 3] if np.dot(step, acq.slice_normal) > 0 else a[:3, 3] + step * 11
    np.testing.assert_allclose(img.GetOrigin(), first, atol=1e-3)
    np.testing.assert_allclose(img.GetSpacing(), (1.1, 0.9, 3.5), atol=1e-4)
    direction = np.array(img.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(direction[:, 0], a[:3, 0] / 1.1, atol=1e-5)
    np.testing.assert_allclose(direction[:, 1], a[:3, 1] / 0.9, atol=1e-5)
    np.testing.assert_allclose(direction[:, 2], acq.slice_normal, atol=1e-5)


def test_ct_encodings_round_trip_hounsfield_units(tmp_path):
    hu = np.array([[-1024.0, -3.0], [40.0, 1900.0]], np.float32)
    for vendor in ("GE", "Siemens", "Philips", "Canon"):
        stored, rep, intercept = dw.encode_ct(hu, vendor)
        assert (stored.astype(float) + intercept == hu).all()
        assert stored.dtype == (np.int16 if rep else np.uint16)


# --- the export ------------------------------------------------------------------------------------
def test_every_file_is_accounted_for(export):
    out, manifest = export
    files = _files(out)
    truths = _truths(out)
    listed = {p for t in truths for s in t["series"] for p in s["paths"]}
    listed |= {r["path"] for r in manifest["export_level_files"]}
    on_disk = {p.relative_to(out).as_posix() for p in files}
    assert on_disk == listed
    assert manifest["counts"]["files"] == len(files)
    assert manifest["counts"]["studies"] == len(truths) == 6
    assert not [p for p in files if p.name.endswith(".tmp")]


def test_truth_files_complete(export):
    out, _ = export
    keys = {
        "study_instance_uid",
        "accession_number",
        "patient_id",
        "modality",
        "study_date",
        "age",
        "sex",
        "site",
        "labels",
        "findings",
        "triage",
        "indication",
        "report_present",
        "key_findings",
        "series",
    }
    for t in _truths(out):
        assert keys <= set(t)
        assert t["triage"] in ("unremarkable", "routine", "urgent")
        assert (t["triage"] == "unremarkable") == (not t["findings"])
        for f in t["findings"]:
            assert {"kind", "side", "location", "center_lps", "volume_ml"} <= set(f)
        for s in t["series"]:
            assert s["expected"] == "included" or s["expected"].split(":")[1] in bad.REASONS
            assert s["n_files"] == len(s["paths"])


def test_files_parse_and_carry_phi_and_geometry(export):
    out, manifest = export
    planted = {r["path"] for r in manifest["export_level_files"]}
    truncated = {
        p
        for t in _truths(out)
        for s in t["series"]
        for p in s["paths"]
        if any(d["reason"] == "truncated_pixel_data" for d in s["file_exclusions"])
    }
    n_images = 0
    for t in _truths(out):
        for s in t["series"]:
            for rel in s["paths"]:
                ds = pydicom.dcmread(out / rel, stop_before_pixels=True)
                assert ds.StudyInstanceUID == t["study_instance_uid"]
                assert ds.SeriesInstanceUID == s["series_instance_uid"]
                assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
                for tag in PHI_TAGS:
                    assert str(ds.get(tag, "")).strip(), (tag, rel)
                if s["role"] in ("image", "bone", "reformat", "adc", "localizer"):
                    n_images += 1
                    assert ds.SOPClassUID in (dw.CT_IMAGE, dw.MR_IMAGE)
                    assert ds.Modality == t["modality"]
                    assert len(ds.ImageOrientationPatient) == 6 and len(ds.ImagePositionPatient) == 3
                    if t["modality"] == "CT":
                        assert "RescaleIntercept" in ds and "GantryDetectorTilt" in ds
                    else:
                        assert "SpacingBetweenSlices" in ds and float(ds.MagneticFieldStrength) in (1.5, 3.0)
    assert n_images > 100
    assert planted and truncated


def test_included_series_are_uniform_volumes_readable_by_simpleitk(export):
    out, _ = export
    checked = 0
    for t in _truths(out):
        for s in t["series"]:
            if s["expected"] != "included":
                continue
            bad_paths = set()
            dss = []
            for rel in s["paths"]:
                ds = pydicom.dcmread(out / rel, stop_before_pixels=True)
                dss.append((rel, ds))
            # drop planted duplicates and truncated files the way ingest must
            seen, keep = set(), []
            for rel, ds in dss:
                if ds.SOPInstanceUID in seen:
                    continue
                seen.add(ds.SOPInstanceUID)
                size = (out / rel).stat().st_size
                full = pydicom.dcmread(out / rel)
                if len(full.PixelData) < ds.Rows * ds.Columns * 2:
                    bad_paths.add(rel)
                    continue
                keep.append((rel, ds))
                assert size > 0
            assert len(keep) == s["n_included_files"] >= 10
            iop = np.array(keep[0][1].ImageOrientationPatient, float)
            normal = np.cross(iop[:3], iop[3:])
            keep.sort(key=lambda x: float(np.dot(np.array(x[1].ImagePositionPatient, float), normal)))
            pos = np.array([np.array(ds.ImagePositionPatient, float) for _, ds in keep])
            gaps = np.linalg.norm(np.diff(pos, axis=0), axis=1)
            np.testing.assert_allclose(gaps, gaps[0], rtol=1e-4)
            if checked < 4 and not bad_paths and abs(float(keep[0][1].get("GantryDetectorTilt", 0))) < 1e-6:
                img = sitk.ReadImage([str(out / rel) for rel, _ in keep])
                np.testing.assert_allclose(img.GetOrigin(), pos[0], atol=1e-3)
                np.testing.assert_allclose(img.GetSpacing()[2], gaps[0], atol=1e-3)
                checked += 1
    assert checked >= 2


def test_every_bad_input_kind_is_planted(export):
    out, manifest = export
    reasons = {r["expected"].split(":")[1] for r in manifest["export_level_files"]}
    for t in _truths(out):
        for s in t["series"]:
            if s["expected"] != "included":
                reasons.add(s["expected"].split(":")[1])
            reasons |= {d["reason"] for d in s["file_exclusions"]}
    assert reasons == set(bad.REASONS)
    corrupt = next(out / r["path"] for r in manifest["export_level_files"] if "unreadable" in r["expected"])
    with pytest.raises(Exception):
        pydicom.dcmread(corrupt)
    dicomdir = pydicom.dcmread(out / "dicom" / "DICOMDIR")
    assert dicomdir.file_meta.MediaStorageSOPClassUID == dw.MEDIA_STORAGE_DIRECTORY


def test_reports_csv(export):
    out, manifest = export
    df = pd.read_csv(out / "reports.csv", dtype=str)
    assert list(df.columns) == [
        "accession_number",
        "patient_id",
        "study_date",
        "modality",
        "exam_description",
        "indication",
        "report_text",
    ]
    truths = {t["accession_number"]: t for t in _truths(out)}
    assert set(df.accession_number) == {a for a, t in truths.items() if t["report_present"]}
    assert len(df) == manifest["counts"]["reports"]


def test_deterministic_for_any_worker_count(export, tmp_path):
    out, manifest = export
    again = write_export(tmp_path / "w2", tiny_cfg(), seed=11, workers=2)
    assert again["counts"] == manifest["counts"]
    assert _digest(out) == _digest(tmp_path / "w2")


def test_a_patients_studies_share_their_head_size():
    """In the cohort the person is the patient: every study of one patient has the same head size (the singular
    values of its pose), studies of different patients do not."""
    from neurovfm.analysis.synth_patients import iter_poses

    cfg = default_config()
    cfg["synth"].update(n_studies=40)
    seed = int(cfg["seed"])
    plans = build_cohort(synth_settings(cfg), seed)
    uid_patient = {dw.make_uid(seed, p.index, "study"): p.patient.index for p in plans}
    sizes = {}
    for uid, pose in iter_poses(cfg, set(uid_patient)):
        sizes.setdefault(uid_patient[uid], []).append(np.linalg.svd(pose[:3, :3], compute_uv=False))
    repeat = [v for v in sizes.values() if len(v) > 1]
    assert repeat, "the cohort has no patient with two studies"
    for v in repeat:
        np.testing.assert_allclose(v, [v[0]] * len(v), rtol=1e-12)
    firsts = np.array([v[0] for v in sizes.values()])
    assert len(np.unique(firsts.round(6), axis=0)) == len(firsts)  # no two patients share one
