"""Pixel loading for preprocessing: a DICOM series (files in sorted order) or a NIfTI file as a float32
array indexed (k, j, i) = (slice, row, column), with the voxel -> LPS affine of the same convention."""
from __future__ import annotations

import warnings

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError


class VolumeError(RuntimeError):
    """The pixel data of a volume cannot be decoded or does not match its recorded geometry."""


def load_series_volume(paths: list[str], affine_lps, position_tolerance_mm: float = 0.05) -> np.ndarray:
    """Stack the slices of ``paths`` (already in sorted order) with RescaleSlope/Intercept applied.

    Each slice's ImagePositionPatient is checked against ``affine_lps`` applied to (0, 0, k): a mismatch
    means the file list and the affine disagree (wrong order or a different series) and raises.
    """
    if not paths:
        raise VolumeError("no files given")
    affine = np.asarray(affine_lps, dtype=float).reshape(4, 4)
    out = None
    for k, path in enumerate(paths):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path)
                pix = ds.pixel_array
        except (InvalidDicomError, OSError, ValueError, AttributeError, KeyError, TypeError, RuntimeError,
                NotImplementedError, EOFError) as exc:
            raise VolumeError(f"slice {k}: pixel data could not be decoded ({type(exc).__name__}: {exc})") from exc
        if pix.ndim != 2:
            raise VolumeError(f"slice {k}: expected a 2D single-sample image, got shape {pix.shape}")
        if out is None:
            out = np.empty((len(paths), *pix.shape), dtype=np.float32)
        elif pix.shape != out.shape[1:]:
            raise VolumeError(f"slice {k}: matrix {pix.shape} differs from the first slice's {out.shape[1:]}")
        ipp = ds.get("ImagePositionPatient")
        if ipp is not None:
            expected = affine[:3, 3] + k * affine[:3, 2]
            err = float(np.max(np.abs(np.asarray([float(v) for v in ipp]) - expected)))
            if err > position_tolerance_mm:
                raise VolumeError(f"slice {k}: position is {err:.3f} mm from where the affine puts it")
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        out[k] = pix.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    return out


def load_nifti_volume(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(float32 array (k, j, i), 4x4 voxel (i, j, k) -> LPS affine). A trailing singleton 4th axis is
    dropped; other non-3D images raise."""
    import nibabel as nib

    from neurovfm.ingest.nifti import ras_to_lps

    try:
        img = nib.load(path)
        data = np.asarray(img.dataobj, dtype=np.float32)  # applies scl_slope / scl_inter
    except (OSError, ValueError, EOFError, nib.filebasedimages.ImageFileError) as exc:
        raise VolumeError(f"NIfTI could not be read ({type(exc).__name__}: {exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise VolumeError(f"expected a 3D image, got shape {data.shape}")
    return np.ascontiguousarray(data.transpose(2, 1, 0)), ras_to_lps(img.affine)
