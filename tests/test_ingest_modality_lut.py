"""Stored values -> modality values through pydicom's Modality LUT stage (neurovfm.ingest.volume)."""

import numpy as np
from pydicom.dataset import Dataset

from neurovfm.ingest.volume import modality_values


def _ds(**attrs) -> Dataset:
    ds = Dataset()
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def test_rescale_slope_and_intercept():
    pix = np.array([[0, 1000], [2000, 4095]], dtype=np.uint16)
    out = modality_values(_ds(RescaleSlope="1.5", RescaleIntercept="-1024"), pix)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, pix.astype(np.float64) * 1.5 - 1024)


def test_missing_or_partial_rescale_is_the_identity_completed():
    pix = np.array([[3, 7]], dtype=np.int16)
    np.testing.assert_array_equal(modality_values(_ds(), pix), [[3, 7]])
    np.testing.assert_array_equal(modality_values(_ds(RescaleIntercept="-1024"), pix), [[-1021, -1017]])
    np.testing.assert_array_equal(modality_values(_ds(RescaleSlope="2"), pix), [[6, 14]])


def test_modality_lut_sequence_is_applied():
    item = Dataset()
    item.LUTDescriptor = [4, 10, 16]  # 4 entries, first stored value mapped is 10, 16-bit output
    item.LUTData = [100, 200, 300, 400]
    ds = _ds(RescaleSlope="1", RescaleIntercept="0")
    ds.ModalityLUTSequence = [item]
    pix = np.array([[5, 10, 11, 13, 99]], dtype=np.uint16)
    # below the first mapped value: the first entry; past the table: the last entry
    np.testing.assert_array_equal(modality_values(ds, pix), [[100, 100, 200, 400, 400]])
