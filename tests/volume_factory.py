"""Analytic head phantoms on arbitrary acquisition geometries (tests and benchmarks/preprocess.py only).

A phantom is a function of LPS position (so any orientation, obliquity or gantry tilt samples the same
anatomy): air outside an ellipsoidal head, a skull shell, brain, and a small dense blob. Volumes are
returned as float32 [k, j, i] with the voxel (i, j, k) -> LPS affine of ``series.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

_PLANES = {  # plane -> (direction of +column i, direction of +row j), LPS
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
}
HEAD_RADII_MM = (72.0, 92.0, 84.0)  # L-R, A-P, I-S semi-axes
SKULL_MM = 6.0
CT_VALUES = {"air": -1000.0, "skull": 1100.0, "brain": 35.0, "blob": 75.0}
MR_VALUES = {"air": 5.0, "skull": 150.0, "brain": 600.0, "blob": 900.0}


@dataclass(frozen=True)
class Acquisition:
    plane: str = "axial"
    shape: tuple = (30, 128, 128)  # (n_slices, rows, cols)
    pixel_mm: tuple = (1.6, 1.6)  # (row spacing, column spacing)
    slice_mm: float = 5.0  # distance between slice origins along the slice step
    oblique_deg: float = 0.0  # rotation of the plane about the LPS x axis
    tilt_deg: float = 0.0  # gantry tilt: shear the stack along the table (z) axis
    flip_cols: bool = False
    flip_rows: bool = False
    reverse_slices: bool = False
    center: tuple = (0.0, 0.0, 0.0)

    def affine(self) -> np.ndarray:
        c = np.asarray(_PLANES[self.plane][0]) * (-1 if self.flip_cols else 1)
        r = np.asarray(_PLANES[self.plane][1]) * (-1 if self.flip_rows else 1)
        a = np.radians(self.oblique_deg)
        rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
        c, r = rot @ c, rot @ r
        n = np.cross(c, r) * (-1 if self.reverse_slices else 1)
        step = n * self.slice_mm
        if self.tilt_deg:  # slices stay in the (tilted) plane; origins advance along the table axis z
            t = np.radians(self.tilt_deg)
            tilt = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
            c, r = tilt @ c, tilt @ r
            step = np.array([0.0, 0.0, np.sign(n[2]) or 1.0]) * self.slice_mm
        m = np.column_stack([c * self.pixel_mm[1], r * self.pixel_mm[0], step])
        k, j, i = (np.asarray(self.shape) - 1) / 2.0
        out = np.eye(4)
        out[:3, :3] = m
        out[:3, 3] = np.asarray(self.center) - m @ np.array([i, j, k])
        return out


def lps_grid(affine: np.ndarray, shape) -> np.ndarray:
    """LPS coordinates (3, k, j, i) of every voxel centre."""
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    m = affine.astype(np.float32)
    return np.stack([m[d, 0] * i + m[d, 1] * j + m[d, 2] * k + m[d, 3] for d in range(3)])


def head(xyz: np.ndarray, modality: str = "CT") -> np.ndarray:
    """Phantom values at LPS positions ``xyz`` (3, ...)."""
    vals = CT_VALUES if modality == "CT" else MR_VALUES
    rx, ry, rz = HEAD_RADII_MM
    rho = np.sqrt((xyz[0] / rx) ** 2 + (xyz[1] / ry) ** 2 + (xyz[2] / rz) ** 2)
    inner = 1.0 - SKULL_MM / min(HEAD_RADII_MM)
    out = np.full(xyz.shape[1:], vals["air"], dtype=np.float32)
    out[rho < 1.0] = vals["skull"]
    out[rho < inner] = vals["brain"]
    blob = ((xyz[0] - 20) ** 2 + (xyz[1] + 10) ** 2 + (xyz[2] - 15) ** 2) < 15.0**2
    out[blob & (rho < inner)] = vals["blob"]
    return out


def ramp(xyz: np.ndarray, coef=(1.0, -2.0, 3.0), offset: float = 100.0) -> np.ndarray:
    """A linear function of position: linear interpolation and centred box averages reproduce it exactly."""
    return (coef[0] * xyz[0] + coef[1] * xyz[1] + coef[2] * xyz[2] + offset).astype(np.float32)


def volume(acq: Acquisition, modality: str = "CT", noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    affine = acq.affine()
    out = head(lps_grid(affine, acq.shape), modality)
    if noise:
        out += np.random.default_rng(seed).normal(0.0, noise, out.shape).astype(np.float32)
    return out, affine


def write_dicom_series(
    folder: str | Path,
    array: np.ndarray,
    affine: np.ndarray,
    modality: str,
    uid_prefix: str = "1.2.826.0.1.3680043.8.498.",
) -> list[Path]:
    """Write ``array`` ([k, j, i], HU for CT) as uncompressed 16-bit DICOM slices; returns the paths in order."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    intercept = -1024.0 if modality == "CT" else 0.0
    stored = np.clip(np.rint(array - intercept), 0, 65535).astype(np.uint16)
    series_uid, study_uid = generate_uid(uid_prefix), generate_uid(uid_prefix)
    col_dir = affine[:3, 0] / np.linalg.norm(affine[:3, 0])
    row_dir = affine[:3, 1] / np.linalg.norm(affine[:3, 1])
    sop_class = "1.2.840.10008.5.1.4.1.1.2" if modality == "CT" else "1.2.840.10008.5.1.4.1.1.4"
    paths = []
    for k in range(array.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid(uid_prefix)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{k:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.StudyInstanceUID, ds.SeriesInstanceUID = modality, study_uid, series_uid
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [round(float(v), 6) for v in (*col_dir, *row_dir)]
        ds.ImagePositionPatient = [round(float(v), 4) for v in affine[:3, 3] + k * affine[:3, 2]]
        ds.PixelSpacing = [
            round(float(np.linalg.norm(affine[:3, 1])), 6),
            round(float(np.linalg.norm(affine[:3, 0])), 6),
        ]
        ds.Rows, ds.Columns = int(array.shape[1]), int(array.shape[2])
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = intercept, 1.0
        ds.PixelData = stored[k].tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
