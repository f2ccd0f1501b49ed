"""The element cache of the synthetic export's DICOM writer: the same bytes as pydicom's own writer."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian

from neurovfm.config import default_config
from neurovfm.synth import dicom_writer as dw
from neurovfm.synth.cohort import build_cohort
from neurovfm.synth.export import synth_settings
from neurovfm.synth.geometry import Acquisition


def _series(modality: str, n: int = 6):
    cfg = synth_settings(default_config())
    cfg.update(n_studies=4, mr_matrix=[32], ct_matrix=[32], max_slices=16, mprage_fraction=0.0)
    study = next(p for p in build_cohort(cfg, seed=5) if p.modality == modality)
    acq = Acquisition(
        plane="axial",
        rows=16,
        cols=12,
        n_slices=n,
        pixel_spacing=(0.9, 1.1),
        slice_thickness=3.0,
        spacing_between_slices=3.0,
        center_lps=(1.0, -2.0, 3.0),
        oblique_deg=(4.0, 0.0, -2.0),
        gantry_tilt_deg=0.0,
        reverse_order=False,
    )

    class S:  # a minimal series plan
        number, description, image_type = 2, f"AX {modality}", ("ORIGINAL", "PRIMARY", "AXIAL")
        acqs, contrast_agent, b_value = [acq], None, None
        timing = None if modality == "CT" else (500.0, 12.0, None)
        kernel = "STANDARD" if modality == "CT" else None

    S.modality = modality
    vol = np.random.default_rng(1).uniform(0, 80, (n, 16, 12)).astype(np.float32)
    base = dw.patient_study_attrs(study, "1.2.3", "1 Main St")
    sops = [dw.make_uid(1, modality, k) for k in range(n)]
    return dw.image_datasets(study, S, vol, base, "1.2.3.4", "1.2.3.5", sops, (40.0, 80.0))


def _pydicom_bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_cached_bytes_equal_pydicom_for_every_slice(modality):
    cache = dw.ElementCache()
    n = 0
    for ds in _series(modality):
        ours = cache.encode(ds)  # first: pydicom's writer resolves ambiguous VRs in place
        assert ours == _pydicom_bytes(ds)
        assert pydicom.dcmread(io.BytesIO(ours)).SOPInstanceUID == ds.SOPInstanceUID
        n += 1
    assert n == 6


def test_a_changed_element_is_encoded_again():
    """Positive control: values that compare equal as numbers but are written differently, a changed matrix, and
    the same text under another character set."""
    cache = dw.ElementCache()
    series = _series("MR", n=3)
    first = next(series)
    first.SpecificCharacterSet, first.SeriesDescription = "ISO_IR 100", "AX T2 tête"  # Latin-1
    cache.encode(first)
    second = next(series)
    second.SliceThickness = "3.00"  # equal to 3.0 as a float, longer as text
    second.Rows, second.Columns = 12, 16
    second.SOPInstanceUID = second.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"  # a shorter group 2
    ours = cache.encode(second)
    assert ours == _pydicom_bytes(second)
    read = pydicom.dcmread(io.BytesIO(ours))
    assert str(read.SliceThickness) == "3.00" and (read.Rows, read.Columns) == (12, 16)
    third = next(series)
    third.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: the same description has other bytes
    assert cache.encode(third) == _pydicom_bytes(third)


def test_write_dataset_through_the_cache_is_atomic_and_readable(tmp_path):
    cache = dw.ElementCache()
    paths = []
    for k, ds in enumerate(_series("CT", n=4)):
        paths.append(tmp_path / "a" / f"f{k}.dcm")
        dw.write_dataset(ds, paths[-1], cache)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [p.name for p in paths]  # no temporary left
    assert [int(pydicom.dcmread(p).InstanceNumber) for p in paths] == [1, 2, 3, 4]


def test_other_transfer_syntaxes_are_refused():
    ds = next(_series("CT", n=1))
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    with pytest.raises(ValueError, match="explicit VR little endian only"):
        dw.ElementCache().encode(ds)
