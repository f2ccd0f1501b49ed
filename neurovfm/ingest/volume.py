"""Pixel loading for preprocessing: a DICOM series (files in sorted order) or a NIfTI file as a float32
array indexed (k, j, i) = (slice, row, column), with the voxel -> LPS affine of the same convention."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian


class VolumeError(RuntimeError):
    """The pixel data of a volume cannot be decoded or does not match its recorded geometry. ``reason`` is a
    code of :mod:`neurovfm.utils.failure`; the message (``detail``) holds fixed words and numbers only."""

    def __init__(self, detail: str, reason: str = "unreadable_pixels"):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def read_slice(path: str):
    """The data set of one DICOM file with its pixels, read the way ingest read its header: a file without
    the 128-byte preamble (a bare data set, which ingest accepts) is read with ``force`` and its transfer
    syntax inferred. OSError (missing, permission, I/O) propagates; other failures are diagnosed."""
    with open(path, "rb") as fp:
        head = fp.read(132)
    part10 = len(head) == 132 and head[128:132] == b"DICM"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=not part10)
            if not part10 and "TransferSyntaxUID" not in ds.file_meta:
                ds.file_meta.TransferSyntaxUID = (
                    ImplicitVRLittleEndian
                    if ds.is_implicit_VR
                    else ExplicitVRLittleEndian
                    if ds.is_little_endian
                    else ExplicitVRBigEndian
                )
            return ds, ds.pixel_array
    except OSError:
        raise
    except (
        InvalidDicomError,
        ValueError,
        AttributeError,
        KeyError,
        TypeError,
        RuntimeError,
        NotImplementedError,
        EOFError,
        IndexError,
    ) as exc:
        raise diagnose(path, part10, exc) from exc


def diagnose(path: str, part10: bool, exc: BaseException) -> VolumeError:
    """What is wrong with a DICOM file whose pixels could not be read, in words a person can act on."""
    from neurovfm.ingest.discover import _RAW_FIRST_GROUPS, _expected_pixel_bytes

    size = os.path.getsize(path)
    with open(path, "rb") as fp:
        head = fp.read(8)
    if not part10 and (len(head) < 8 or int.from_bytes(head[:2], "little") not in _RAW_FIRST_GROUPS):
        return VolumeError(
            "no DICM preamble and no DICOM data set at the start (the file changed after ingest or is not DICOM)",
            "not_dicom",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    except (
        InvalidDicomError,
        ValueError,
        AttributeError,
        KeyError,
        TypeError,
        EOFError,
        IndexError,
        NotImplementedError,
    ) as err:
        return VolumeError(
            f"the header cannot be parsed ({type(err).__name__}); the file is {size} bytes", "unreadable_dicom"
        )
    ts = str(ds.file_meta.get("TransferSyntaxUID", "") or "") if ds.file_meta else ""
    rec = {
        "rows": ds.get("Rows"),
        "cols": ds.get("Columns"),
        "bits_allocated": ds.get("BitsAllocated"),
        "samples_per_pixel": ds.get("SamplesPerPixel"),
    }
    expected = _expected_pixel_bytes(rec)
    if "PixelData" not in ds and expected:
        return VolumeError(
            f"the file is truncated: it ends after the header, before its pixel data ({size} "
            f"bytes, the image alone needs {expected})",
            "truncated_file",
        )
    compressed = bool(ts) and ts not in (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian)
    if compressed:
        name = UID(ts).name if not UID(ts).is_private else "an unregistered transfer syntax"
        return VolumeError(
            f"compressed pixel data ({name}) that no installed decoder can read, or a corrupt "
            f"compressed stream ({type(exc).__name__}); install the decoder (pylibjpeg, "
            "gdcm) or export uncompressed",
            "pixel_decode_failed",
        )
    if expected and size < expected:
        return VolumeError(f"the file is truncated: {size} bytes, the image alone needs {expected}", "truncated_file")
    return VolumeError(
        f"the pixel data cannot be decoded ({type(exc).__name__}); the file is {size} bytes", "pixel_decode_failed"
    )


def load_series_volume(paths: list[str], affine_lps, position_tolerance_mm: float = 0.05) -> np.ndarray:
    """Stack the slices of ``paths`` (already in sorted order) as modality values (:func:`modality_values`).

    Each slice's ImagePositionPatient is checked against ``affine_lps`` applied to (0, 0, k): a mismatch
    means the file list and the affine disagree (wrong order or a different series) and raises. A file
    that cannot be read raises OSError (missing, permission: transient) or VolumeError with a reason.
    """
    if not paths:
        raise VolumeError("no files given")
    affine = np.asarray(affine_lps, dtype=float).reshape(4, 4)
    out = None
    for k, path in enumerate(paths):
        try:
            ds, pix = read_slice(path)
        except VolumeError as err:
            raise VolumeError(f"slice {k}: {err.detail}", err.reason) from err
        if pix.ndim != 2:
            raise VolumeError(f"slice {k}: expected a 2D single-sample image, got shape {pix.shape}")
        if out is None:
            out = np.empty((len(paths), *pix.shape), dtype=np.float32)
        elif pix.shape != out.shape[1:]:
            raise VolumeError(
                f"slice {k}: matrix {pix.shape} differs from the first slice's {out.shape[1:]}", "geometry_mismatch"
            )
        ipp = ds.get("ImagePositionPatient")
        if ipp is not None:
            expected = affine[:3, 3] + k * affine[:3, 2]
            err = float(np.max(np.abs(np.asarray([float(v) for v in ipp]) - expected)))
            if err > position_tolerance_mm:
                raise VolumeError(
                    f"slice {k}: position is {err:.3f} mm from where the affine puts it", "geometry_mismatch"
                )
        out[k] = modality_values(ds, pix)
    return out


def modality_values(ds, pix: np.ndarray) -> np.ndarray:
    """Stored pixel values -> modality values (CT: Hounsfield units) by pydicom's Modality LUT stage
    (``apply_modality_lut``: a Modality LUT Sequence, else RescaleSlope and RescaleIntercept), as float32.
    A rescale with only one of the two attributes, or an empty or zero slope, is completed with the identity
    (slope 1, intercept 0) first, as scanners that write one of them mean."""
    from pydicom.pixels import apply_modality_lut

    if "ModalityLUTSequence" not in ds and ("RescaleSlope" in ds or "RescaleIntercept" in ds):
        ds.RescaleSlope = float(ds.get("RescaleSlope") or 1.0)
        ds.RescaleIntercept = float(ds.get("RescaleIntercept") or 0.0)
    return np.asarray(apply_modality_lut(pix, ds), dtype=np.float32)


def load_nifti_volume(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(float32 array (k, j, i), 4x4 voxel (i, j, k) -> LPS affine). A trailing singleton 4th axis is
    dropped; other non-3D images raise."""
    import nibabel as nib

    from neurovfm.ingest.nifti import ras_to_lps

    try:
        with open(path, "rb"):
            pass  # a missing or unreadable file raises OSError here (transient), not as a NIfTI problem
        img = nib.load(path)
        data = np.asarray(img.dataobj, dtype=np.float32)  # applies scl_slope / scl_inter
    except (FileNotFoundError, PermissionError):
        raise
    except (OSError, ValueError, EOFError, nib.filebasedimages.ImageFileError) as exc:
        raise VolumeError(
            f"NIfTI could not be read ({type(exc).__name__}); truncated or not NIfTI", "unreadable_nifti"
        ) from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise VolumeError(f"expected a 3D image, got shape {data.shape}", "not_3d")
    return np.ascontiguousarray(data.transpose(2, 1, 0)), ras_to_lps(img.affine)
