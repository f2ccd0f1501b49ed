"""NIfTI input: affine RAS->LPS, array axis convention, ledger for unreadable/4D/missing files."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from neurovfm.config import default_config
import SimpleITK as sitk

from neurovfm.ingest.nifti import run_ingest_nifti
from neurovfm.ingest.volume import VolumeError, load_nifti_volume

CFG = default_config(
    **{
        "seed": 2,
        "ingest": {"min_slices": 4, "max_tilt_deg": 30.0},
        "deid": {"age_cap": 90},
        "splits": {"val_per_modality": 1},
    }
)


def _affine_ras():
    a = np.eye(4)
    rot = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # a sagittal-first storage order
    a[:3, :3] = rot @ np.diag([1.2, 0.9, 3.0])
    a[:3, 3] = [-30.0, 12.0, 8.0]
    return a


def test_nifti_ingest_and_load(tmp_path):
    data = np.arange(7 * 6 * 5, dtype=np.int16).reshape(7, 6, 5)
    nib.save(nib.Nifti1Image(data, _affine_ras()), tmp_path / "a.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.float32), np.eye(4)), tmp_path / "dyn.nii.gz")
    (tmp_path / "broken.nii.gz").write_bytes(b"not gzip")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 5), np.float32), np.eye(4)), tmp_path / "unlisted.nii")
    pd.DataFrame(
        [
            {
                "file": "a.nii.gz",
                "subject_id": "sub-01",
                "modality": "MRI",
                "sequence": "T1w",
                "age": 95,
                "sex": "f",
                "dx": "AD",
            },
            {
                "file": "dyn.nii.gz",
                "subject_id": "sub-02",
                "modality": "MRI",
                "sequence": "t2",
                "age": 50,
                "sex": "M",
                "dx": "CN",
            },
            {
                "file": "broken.nii.gz",
                "subject_id": "sub-03",
                "modality": "CT",
                "sequence": "",
                "age": 50,
                "sex": "M",
                "dx": "CN",
            },
            {
                "file": "gone.nii.gz",
                "subject_id": "sub-04",
                "modality": "CT",
                "sequence": "",
                "age": 50,
                "sex": "M",
                "dx": "CN",
            },
        ]
    ).to_csv(tmp_path / "meta.csv", index=False)
    out = tmp_path / "out"
    summary = run_ingest_nifti(str(tmp_path), str(tmp_path / "meta.csv"), str(out), str(tmp_path / "priv"), CFG, b"k")
    assert summary["excluded_files_by_reason"] == {
        "missing_file": 1,
        "not_3d": 1,
        "not_in_csv": 1,
        "unreadable_nifti": 1,
    }
    assert summary["n_files_seen"] == 5 and summary["n_files_included"] == 1
    series = pd.read_csv(out / "series.csv")
    row = series.iloc[0]
    aff = np.array(json.loads(row["affine_lps"])).reshape(4, 4)
    # SimpleITK reads NIfTI straight into LPS: compare its geometry with ours
    img = sitk.ReadImage(str(tmp_path / "a.nii.gz"))
    for idx in [(0, 0, 0), (6, 0, 0), (0, 5, 4), (6, 5, 4)]:
        np.testing.assert_allclose(img.TransformIndexToPhysicalPoint(idx), (aff @ [*idx, 1])[:3], atol=1e-4)
    assert (row["n_slices"], row["rows"], row["cols"]) == (5, 6, 7)
    assert row["sequence"] == "t1" and row["orientation"] == "sagittal"
    assert row["pixel_spacing_col"] == pytest.approx(1.2) and row["slice_spacing"] == pytest.approx(3.0)
    studies = pd.read_csv(out / "studies.csv")
    assert studies["age"].tolist() == [90.0] and studies["sex"].tolist() == ["F"]
    labels = pd.read_csv(out / "nifti_labels.csv")
    assert labels.columns.tolist() == ["study_id", "split", "dx"] and labels["dx"].tolist() == ["AD"]
    vol, aff2 = load_nifti_volume(str(tmp_path / "a.nii.gz"))
    np.testing.assert_allclose(aff2, aff, atol=1e-5)
    np.testing.assert_array_equal(vol, sitk.GetArrayFromImage(img).astype(np.float32))  # (k, j, i) both
    with pytest.raises(VolumeError, match="3D"):
        load_nifti_volume(str(tmp_path / "dyn.nii.gz"))
    with pytest.raises(VolumeError):
        load_nifti_volume(str(tmp_path / "broken.nii.gz"))
