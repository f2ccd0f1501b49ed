"""Craft small DICOM series with exact, known geometry (and planted faults) for the ingest tests."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_SOP = "1.2.840.10008.5.1.4.1.1.2"
MR_SOP = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_SOP = "1.2.840.10008.5.1.4.1.1.4.1"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
PDF_SOP = "1.2.840.10008.5.1.4.1.1.104.1"
CR_SOP = "1.2.840.10008.5.1.4.1.1.1"
DICOMDIR_SOP = "1.2.840.10008.1.3.10"

PLANES = {  # (row cosine, column cosine)
    "axial": ((1, 0, 0), (0, 1, 0)),
    "coronal": ((1, 0, 0), (0, 0, -1)),
    "sagittal": ((0, 1, 0), (0, 0, -1)),
}


def rot(axis: str, deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


@dataclass
class Study:
    patient_name: str = "Doe^Jane"
    patient_id: str = "MRN0001"
    birth_date: str = "19600315"
    accession: str = "ACC0001"
    address: str = "12 Elm Street, Springfield"
    study_date: str = "20200105"
    sex: str = "F"
    age: str | None = None
    study_uid: str = field(default_factory=generate_uid)
    institution: str = "UM Main"


@dataclass
class Spec:
    plane: str = "axial"
    rows: int = 8
    cols: int = 6
    n: int = 12
    pixel_spacing: tuple = (0.9, 0.7)  # (row spacing, column spacing)
    spacing: float = 2.5  # distance between planes
    origin: tuple = (-10.0, -20.0, 30.0)
    oblique: tuple = ()  # ((axis, deg), ...) rotations applied to the plane
    tilt_deg: float = 0.0  # CT gantry tilt about x; slice origins step along +z
    reverse: bool = False  # files/instances numbered from the far end
    modality: str = "MR"
    sop_class: str | None = None
    description: str = "AX T2 FSE"
    image_type: tuple = ("ORIGINAL", "PRIMARY", "AXIAL")
    series_uid: str = field(default_factory=generate_uid)
    contrast_agent: str | None = None
    transfer_syntax: str = ExplicitVRLittleEndian
    slope: float = 1.0
    intercept: float = 0.0
    extra: dict = field(default_factory=dict)  # keyword -> value on every slice

    def cosines(self) -> tuple[np.ndarray, np.ndarray]:
        r, c = (np.array(v, dtype=float) for v in PLANES[self.plane])
        m = np.eye(3)
        for axis, deg in self.oblique:
            m = rot(axis, deg) @ m
        if self.tilt_deg:
            m = rot("x", self.tilt_deg) @ m
        return m @ r, m @ c

    def step(self) -> np.ndarray:
        r, c = self.cosines()
        n = np.cross(r, c)
        if self.tilt_deg:
            return np.array([0.0, 0.0, np.sign(n[2])]) * self.spacing / abs(n[2])
        return n * self.spacing

    def positions(self) -> np.ndarray:
        """IPP of slice k in spatial (sorted along the normal) order."""
        k = np.arange(self.n)[:, None]
        return np.asarray(self.origin, dtype=float)[None, :] + k * self.step()[None, :]

    def affine(self) -> np.ndarray:
        """Expected voxel (i, j, k sorted) -> LPS affine."""
        r, c = self.cosines()
        a = np.eye(4)
        a[:3, 0] = r * self.pixel_spacing[1]
        a[:3, 1] = c * self.pixel_spacing[0]
        a[:3, 2] = self.step()
        a[:3, 3] = self.origin
        return a

    def pixels(self, k: int) -> np.ndarray:
        j, i = np.mgrid[: self.rows, : self.cols]
        return (100 * k + 10 * j + i + 1).astype(np.uint16)


def make_dataset(spec: Spec, study: Study, k: int, ipp, instance: int, sop_uid: str | None = None) -> Dataset:
    r, c = spec.cosines()
    sop_class = spec.sop_class or (CT_SOP if spec.modality == "CT" else MR_SOP)
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.Modality = spec.modality
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = spec.series_uid
    ds.StudyDate = study.study_date
    ds.AccessionNumber = study.accession
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.birth_date
    ds.PatientSex = study.sex
    if study.age:
        ds.PatientAge = study.age
    ds.PatientAddress = study.address
    ds.InstitutionName = study.institution
    ds.Manufacturer = "ACME"
    if spec.modality == "MR":
        ds.MagneticFieldStrength = 3
    ds.SeriesDescription = spec.description
    ds.ImageType = list(spec.image_type)
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*r, *c)]
    ds.PixelSpacing = list(spec.pixel_spacing)
    ds.SliceThickness = spec.spacing
    ds.Rows, ds.Columns = spec.rows, spec.cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = spec.slope, spec.intercept
    if spec.contrast_agent:
        ds.ContrastBolusAgent = spec.contrast_agent
    for kw, v in spec.extra.items():
        setattr(ds, kw, v)
    ds.PixelData = spec.pixels(k).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = spec.transfer_syntax
    ds.file_meta = meta
    return ds


def write_series(
    root: str, spec: Spec, study: Study, folder: str | None = None, per_slice: dict | None = None
) -> list[str]:
    """Write one file per slice; returns the paths in spatial (sorted) order.
    ``per_slice``: {k: {keyword: value}} overrides for individual slices (None deletes the element)."""
    folder = os.path.join(root, folder or f"{study.patient_id}/{spec.series_uid[-8:]}")
    os.makedirs(folder, exist_ok=True)
    pos = spec.positions()
    paths = []
    rng = np.random.default_rng(abs(hash(spec.series_uid)) % 2**32)
    names = rng.permutation(spec.n)  # file names unrelated to slice order
    for k in range(spec.n):
        instance = spec.n - k if spec.reverse else k + 1
        ds = make_dataset(spec, study, k, pos[k], instance)
        for kw, v in (per_slice or {}).get(k, {}).items():
            if v is None:
                delattr(ds, kw)
            else:
                setattr(ds, kw, v)
        path = os.path.join(folder, f"IM{names[k]:05d}")
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_raw(path: str, ds: Dataset) -> None:
    """Write a data set without preamble or file meta (implicit VR little endian)."""
    from pydicom.filebase import DicomFileLike

    ds = Dataset(ds)
    with open(path, "wb") as raw:
        fh = DicomFileLike(raw)
        fh.is_implicit_VR, fh.is_little_endian = True, True
        pydicom.filewriter.write_dataset(fh, ds)


def write_non_image(path: str, sop_class: str, modality: str, study: Study, series_uid: str | None = None) -> None:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = modality
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_dicomdir(path: str) -> None:
    ds = Dataset()
    ds.FileSetID = "EXPORT"
    ds.DirectoryRecordSequence = []
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DICOMDIR_SOP
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def truncate(path: str, n_bytes: int) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.truncate(size - n_bytes)


__all__ = [
    "Spec",
    "Study",
    "write_series",
    "write_raw",
    "write_non_image",
    "write_dicomdir",
    "truncate",
    "make_dataset",
    "replace",
    "CT_SOP",
    "MR_SOP",
    "ENHANCED_MR_SOP",
    "BASIC_TEXT_SR",
    "SECONDARY_CAPTURE",
    "PDF_SOP",
    "CR_SOP",
]
