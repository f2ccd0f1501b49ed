"""Geometry of ingested volumes against SimpleITK, nibabel and the crafted truth."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest

from neurovfm.config import default_config
import SimpleITK as sitk
from dicom_factory import Spec, Study, write_series

with __import__("warnings").catch_warnings():
    __import__("warnings").simplefilter("ignore", UserWarning)  # "experimental" notice on import
    from nibabel.nicom.dicomwrappers import wrapper_from_data

from neurovfm.ingest.run import run_ingest
from neurovfm.ingest.volume import load_series_volume

CFG = default_config(
    **{
        "seed": 1,
        "ingest": {
            "min_slices": 5,
            "max_tilt_deg": 30.0,
            "spacing_tolerance": 0.1,
            "exclude_description_patterns": ["mip"],
            "allow_empty": True,
        },  # an export of one excluded series is a test case here
        "deid": {"age_cap": 90},
        "splits": {"cutoff": "2023-06-01", "test_end": "2024-05-31", "val_per_modality": 0},
    }
)

CASES = {
    "axial": Spec(plane="axial"),
    "sagittal": Spec(plane="sagittal", description="SAG T1"),
    "coronal": Spec(plane="coronal", description="COR T2"),
    "oblique": Spec(plane="axial", oblique=(("x", 35.0), ("z", 20.0)), description="OBL T2"),
    "reverse": Spec(plane="coronal", reverse=True, origin=(5.0, 7.0, -3.0), description="COR FLAIR"),
    "mild_oblique": Spec(plane="sagittal", oblique=(("y", 12.0),), description="SAG T1 post"),
}


def _ingest(tmp_path, specs):
    study = Study()
    written = {name: write_series(str(tmp_path / "in"), spec, study) for name, spec in specs.items()}
    summary = run_ingest(
        str(tmp_path / "in"), None, str(tmp_path / "out"), str(tmp_path / "priv"), CFG, b"test-key", workers=1
    )
    series = pd.read_csv(tmp_path / "out" / "series.csv")
    files = pd.read_csv(tmp_path / "priv" / "files.csv")
    return written, summary, series, files


def _row_for(series, files, tmp_path, written_paths):
    rels = {os.path.relpath(p, tmp_path / "in") for p in written_paths}
    sid = files[files["path"].isin(rels)]["series_id"].unique()
    assert len(sid) == 1
    row = series[series["series_id"] == sid[0]].iloc[0]
    ordered = files[files["series_id"] == sid[0]].sort_values("slice_index")["path"].tolist()
    return row, np.array(json.loads(row["affine_lps"])).reshape(4, 4), [str(tmp_path / "in" / p) for p in ordered]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("geom")
    return tmp, *_ingest(tmp, CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_affine_matches_simpleitk(ingested, name):
    tmp, written, _, series, files = ingested
    row, aff, ordered = _row_for(series, files, tmp, written[name])
    spec = CASES[name]
    # our sorted order is the spatial order the file was crafted with
    assert ordered == written[name]
    np.testing.assert_allclose(aff, spec.affine(), atol=1e-4)

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(ordered)
    img = reader.Execute()
    assert img.GetSize() == (spec.cols, spec.rows, spec.n)
    np.testing.assert_allclose(img.GetOrigin(), aff[:3, 3], atol=1e-4)
    np.testing.assert_allclose(img.GetSpacing(), np.linalg.norm(aff[:3, :3], axis=0), atol=1e-4)
    np.testing.assert_allclose(
        np.array(img.GetDirection()).reshape(3, 3), aff[:3, :3] / np.linalg.norm(aff[:3, :3], axis=0), atol=1e-5
    )
    for idx in [
        (0, 0, 0),
        (spec.cols - 1, 0, 0),
        (0, spec.rows - 1, 0),
        (0, 0, spec.n - 1),
        (spec.cols - 1, spec.rows - 1, spec.n - 1),
    ]:
        np.testing.assert_allclose(img.TransformIndexToPhysicalPoint(idx), (aff @ [*idx, 1])[:3], atol=1e-3)
    # GDCM's own slice sorting agrees with ours (possibly reversed, which flips its affine the same way)
    gdcm = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(os.path.dirname(ordered[0])))
    assert gdcm in (ordered, ordered[::-1])
    # voxel values follow the same index convention (k, j, i)
    vol = load_series_volume(ordered, aff)
    np.testing.assert_array_equal(vol, sitk.GetArrayFromImage(img).astype(np.float32))


@pytest.mark.parametrize("name", list(CASES))
def test_affine_matches_nibabel_wrapper(ingested, name):
    tmp, written, _, series, files = ingested
    row, aff, ordered = _row_for(series, files, tmp, written[name])
    first = wrapper_from_data(pydicom.dcmread(ordered[0]))
    # nibabel's per-slice affine indexes (row, column), so its first two columns are ours swapped;
    # same origin; its 3rd column is the slice normal * spacing
    np.testing.assert_allclose(first.affine[:3, [1, 0, 3]], aff[:3, [0, 1, 3]], atol=1e-4)
    # (swapping the in-plane axes flips the handedness, hence the normal's sign)
    nib_normal = first.affine[:3, 2] / np.linalg.norm(first.affine[:3, 2])
    np.testing.assert_allclose(nib_normal, -aff[:3, 2] / np.linalg.norm(aff[:3, 2]), atol=1e-5)
    # nibabel's slice position indicator is strictly monotonic along our sorted order
    indicators = np.array([wrapper_from_data(pydicom.dcmread(p)).slice_indicator for p in ordered])
    steps = np.diff(indicators)
    assert np.all(steps < 0) and np.allclose(steps, -CASES[name].spacing, atol=1e-4)
    # a NIfTI built from our affine puts voxel centres where nibabel says they are
    img = nib.Nifti1Image(
        np.zeros((spec_cols := CASES[name].cols, CASES[name].rows, CASES[name].n), np.float32),
        np.diag([-1, -1, 1, 1]) @ aff,
    )
    corner = nib.affines.apply_affine(img.affine, [spec_cols - 1, 0, CASES[name].n - 1])
    ipp_last = np.array([float(v) for v in pydicom.dcmread(ordered[-1]).ImagePositionPatient])
    r = np.array([float(v) for v in pydicom.dcmread(ordered[-1]).ImageOrientationPatient[:3]])
    expected_lps = ipp_last + r * CASES[name].pixel_spacing[1] * (spec_cols - 1)
    np.testing.assert_allclose(corner * [-1, -1, 1], expected_lps, atol=1e-3)


def test_orientation_labels(ingested):
    tmp, written, _, series, files = ingested
    expect = {
        "axial": "axial",
        "sagittal": "sagittal",
        "coronal": "coronal",
        "oblique": "oblique",
        "reverse": "coronal",
        "mild_oblique": "sagittal",
    }
    for name, label in expect.items():
        row, _, _ = _row_for(series, files, tmp, written[name])
        assert row["orientation"] == label, name
        assert row["tilt_deg"] == pytest.approx(0.0, abs=1e-3)
        assert row["slice_spacing"] == pytest.approx(CASES[name].spacing, abs=1e-4)


@pytest.mark.parametrize("tilt", [12.0, 22.5])
def test_gantry_tilt_is_shear(tmp_path, tilt):
    spec = Spec(modality="CT", description="HEAD WO", tilt_deg=tilt, n=14, slope=1.0, intercept=-1024.0)
    written, summary, series, files = _ingest(tmp_path, {"ct": spec})
    row, aff, ordered = _row_for(series, files, tmp_path, written["ct"])
    assert row["tilt_deg"] == pytest.approx(tilt, abs=1e-3)
    np.testing.assert_allclose(aff, spec.affine(), atol=1e-4)
    # third column is the table step (pure z): not orthogonal to the in-plane columns -> shear
    n = np.cross(aff[:3, 0], aff[:3, 1])
    n /= np.linalg.norm(n)
    cosang = aff[:3, 2] @ n / np.linalg.norm(aff[:3, 2])
    assert np.degrees(np.arccos(cosang)) == pytest.approx(tilt, abs=1e-3)
    # every voxel centre of the last slice from headers equals the affine's
    ds = pydicom.dcmread(ordered[-1])
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    np.testing.assert_allclose((aff @ [0, 0, spec.n - 1, 1])[:3], ipp, atol=1e-4)
    assert row["slice_spacing"] == pytest.approx(spec.spacing, abs=1e-4)
    vol = load_series_volume(ordered, aff)
    assert vol[3, 2, 1] == pytest.approx(spec.pixels(3)[2, 1] - 1024.0)


def test_excessive_tilt_excluded(tmp_path):
    _, summary, series, _ = _ingest(tmp_path, {"ct": Spec(modality="CT", description="HEAD", tilt_deg=40.0)})
    assert len(series) == 0
    assert summary["excluded_files_by_reason"] == {"excessive_tilt": 12}
