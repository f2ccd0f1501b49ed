"""DICOM Part-10 files for the embedded health system, one file per slice, written with pydicom.

Headers carry the geometry of the series' ``Acquisition`` verbatim (the same object the renderer
sampled on), vendor-typical pixel encodings (CT stored as unsigned HU+1024, signed HU+1024 or
signed HU with intercept 0), and the identifiers a real export contains, PHI included: removing it
is the pipeline's job. UIDs come from ``pydicom.uid.generate_uid`` with entropy derived from the
run seed, so a rerun reproduces every file byte for byte.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
from pydicom.charset import default_encoding
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr_element, validate_file_meta, write_data_element
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
# How each vendor family stores CT numbers: (PixelRepresentation, RescaleIntercept).
CT_ENCODING = {"GE": (1, -1024.0), "Siemens": (0, -1024.0), "Philips": (0, -1024.0), "Canon": (1, 0.0)}
HU_RANGE = (-1024.0, 3071.0)
_GROUP_2 = 0x00020000  # (0002,0000) File Meta Information Group Length


def make_uid(seed: int, *parts) -> str:
    """A deterministic UID from the run seed and a path of names (study index, 'series', 3, ...)."""
    return generate_uid(entropy_srcs=[str(seed), *(str(p) for p in parts)])


def dicom_date(d: dt.date) -> str:
    return d.strftime("%Y%m%d")


def patient_age(birth: dt.date, on: dt.date) -> str:
    """DICOM AS: '067Y', or months ('007M') for infants."""
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    if years >= 1:
        return f"{min(years, 999):03d}Y"
    return f"{max(0, (on - birth).days // 30):03d}M"


class ElementCache:
    """Part-10 bytes of a run of similar datasets, such as the slices of one series.

    An element whose VR and value (compared as text, so ``"1.0"`` and ``"1.00"`` differ) equal those of the
    previous dataset reuses the bytes pydicom encoded then; every other element, sequences and pixel data always,
    goes through pydicom's own encoder (all of them again when the character set changes). The result equals
    ``Dataset.save_as(..., enforce_file_format=True)`` byte for byte (tests/test_synth_dicom_cache.py) in half
    the time (a demo study's files: 0.15 -> 0.07 s, benchmarks/RESULTS.md "Synthetic export").
    Explicit VR little endian only, the transfer syntax of every file the generator writes.
    """

    def __init__(self) -> None:
        self._bytes: dict[int, tuple[tuple, bytes]] = {}
        self._charset = None

    @staticmethod
    def _key(elem) -> tuple | None:
        if elem.VR == "SQ" or elem.tag == 0x7FE00010:
            return None
        v = elem.value
        if isinstance(v, (list, tuple, MultiValue)):
            return (elem.VR, tuple((type(x), str(x)) for x in v))
        if isinstance(v, (bytes, bytearray)):
            return (elem.VR, bytes, bytes(v))
        return (elem.VR, type(v), str(v))

    def encode(self, ds: Dataset) -> bytes:
        syntax = ds.file_meta.get("TransferSyntaxUID")
        if syntax != ExplicitVRLittleEndian:
            raise ValueError(f"ElementCache writes explicit VR little endian only, not {syntax}")
        charset = ds.get("SpecificCharacterSet", default_encoding)
        if charset != self._charset:  # text elements were encoded with another character set
            self._bytes.clear()
            self._charset = charset
        parts = [b"\x00" * 128 + b"DICM", self._file_meta(ds.file_meta)]
        for tag in sorted(ds.keys()):
            if tag.element == 0 and tag.group > 6:  # retired group lengths are not written (PS3.5 7.2)
                continue
            elem = ds[tag]
            if " or " in elem.VR:  # e.g. pixel data 'OB or OW': resolved from the dataset as pydicom's writer does
                elem = correct_ambiguous_vr_element(elem, ds, True)
            parts.append(self._element(tag, elem, charset))
        return b"".join(parts)

    def _element(self, tag, elem, charset) -> bytes:
        """The element's bytes: those of the previous dataset when VR and value are the same, else pydicom's."""
        key = self._key(elem)
        hit = self._bytes.get(tag)
        if key is not None and hit is not None and hit[0] == key:
            return hit[1]
        buf = DicomBytesIO()
        buf.is_little_endian, buf.is_implicit_VR = True, False
        write_data_element(buf, elem, charset)
        if key is not None:
            self._bytes[tag] = (key, buf.getvalue())
        return buf.getvalue()

    def _file_meta(self, meta: FileMetaDataset) -> bytes:
        """Group 2 as ``write_file_meta_info(..., enforce_standard=True)`` writes it (pydicom's own checks and the
        elements it adds, then the group length and the elements in tag order), each element through the cache:
        from one slice to the next only the instance UID changes."""
        validate_file_meta(meta, enforce_standard=True)
        body = b"".join(
            self._element(tag, meta[tag], default_encoding) for tag in sorted(meta.keys()) if tag != _GROUP_2
        )
        meta.FileMetaInformationGroupLength = len(body)
        return self._element(_GROUP_2, meta[_GROUP_2], default_encoding) + body


def write_dataset(ds: Dataset, path: Path, cache: ElementCache | None = None) -> None:
    """Write a Part-10 file atomically: temporary sibling, then ``os.replace``. ``cache``: reuse the encoded
    elements that the previous file written through it shares with this one (the same bytes, faster)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if cache is None:
            ds.save_as(tmp, enforce_file_format=True)
        else:
            with open(tmp, "wb") as fh:
                fh.write(cache.encode(ds))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def patient_study_attrs(study, study_uid: str, institution_address: str) -> dict:
    """Patient and study level attributes shared by every file of a study (PHI included on purpose)."""
    p = study.patient
    attrs = {
        "PatientName": p.name,
        "PatientID": p.mrn,
        "PatientBirthDate": dicom_date(p.birth_date),
        "PatientSex": p.sex,
        "PatientAge": patient_age(p.birth_date, study.study_date),
        "PatientAddress": p.address,
        "OtherPatientIDs": p.other_id,
        "EthnicGroup": p.ethnicity,
        "StudyInstanceUID": study_uid,
        "StudyDate": dicom_date(study.study_date),
        "StudyTime": study.study_time,
        "AccessionNumber": study.accession,
        "StudyID": study.accession[-6:],
        "StudyDescription": exam_description(study),
        "ReferringPhysicianName": study.referring,
        "InstitutionName": study.site,
        "InstitutionAddress": institution_address,
        "Manufacturer": study.manufacturer,
        "ManufacturerModelName": study.model,
        "StationName": f"{study.site.split()[-1].upper()}{study.modality}{study.index % 3 + 1}",
        "BodyPartExamined": "HEAD",
        "PatientPosition": "HFS",
    }
    if study.modality == "MR" and study.field_strength is not None:
        attrs["MagneticFieldStrength"] = float(study.field_strength)
    return attrs


def exam_description(study) -> str:
    """The orderable exam name (StudyDescription and the report's EXAM line)."""
    if study.modality == "CT":
        return "CT HEAD W CONTRAST" if study.contrast else "CT HEAD WO CONTRAST"
    return "MRI BRAIN W WO CONTRAST" if study.contrast else "MRI BRAIN WO CONTRAST"


def encode_ct(hu: np.ndarray, vendor: str) -> tuple[np.ndarray, int, float]:
    """CT numbers -> (stored integers, PixelRepresentation, RescaleIntercept) as ``vendor`` stores them."""
    rep, intercept = CT_ENCODING[vendor]
    stored = np.rint(np.clip(hu, *HU_RANGE) - intercept)
    return stored.astype(np.int16 if rep else np.uint16), rep, intercept


def mr_scale(volume: np.ndarray, target: float) -> float:
    """Factor that maps a series' bright end (99.9th percentile) to ``target`` stored units."""
    hi = float(np.percentile(volume, 99.9)) if volume.size else 0.0
    return target / hi if hi > 0 else 1.0


def encode_mr(values: np.ndarray, scale: float) -> np.ndarray:
    return np.rint(np.clip(values * scale, 0, 65535)).astype(np.uint16)


def image_datasets(
    study,
    series,
    volume: np.ndarray,
    base: dict,
    series_uid: str,
    frame_uid: str,
    sop_uids: list[str],
    window: tuple[float, float],
    mr_target: float = 2000.0,
):
    """Yield one Dataset per image of ``series`` (volume: (n_images, rows, cols); CT in HU).

    Multi-plane localizers pass one acquisition per plane; images follow them in order.
    """
    ct = series.modality == "CT"
    sop_class = CT_IMAGE if ct else MR_IMAGE
    scale = 1.0 if ct else mr_scale(volume, mr_target)
    t0 = dt.datetime.strptime(study.study_time, "%H%M%S") + dt.timedelta(minutes=2 * series.number)
    series_time = t0.strftime("%H%M%S")
    k_global = 0
    for acq in series.acqs:
        positions = acq.slice_positions()
        normal = acq.slice_normal
        # One dataset per acquisition: the elements shared by its slices are set once, and each yielded
        # slice only changes what differs (UIDs, position, number, pixels). Callers write it before asking
        # for the next slice, so reusing the object is safe and saves most of the per-file encoding time.
        ds = Dataset()
        for key, value in base.items():
            setattr(ds, key, value)
        ds.SOPClassUID = sop_class
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = series.modality
        ds.SeriesNumber = series.number
        ds.AcquisitionNumber = 1
        ds.SeriesDescription = series.description
        ds.ProtocolName = series.description
        ds.ImageType = list(series.image_type)
        ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = ds.StudyDate
        ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = series_time
        ds.ImageOrientationPatient = [round(v, 8) for v in acq.iop()]
        ds.PixelSpacing = [round(float(v), 8) for v in acq.pixel_spacing]
        ds.SliceThickness = round(float(acq.slice_thickness), 6)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.WindowCenter, ds.WindowWidth = window
        if series.contrast_agent:
            ds.ContrastBolusAgent = series.contrast_agent
        if ct:
            ds.RescaleSlope, ds.RescaleType = 1.0, "HU"
            ds.KVP = 120.0
            ds.ConvolutionKernel = series.kernel or "STANDARD"
            ds.GantryDetectorTilt = round(float(acq.gantry_tilt_deg), 4)
        else:
            ds.PixelRepresentation = 0
            ds.SpacingBetweenSlices = round(float(acq.spacing_between_slices), 6)
            tr, te, ti = series.timing or (None, None, None)
            if tr is not None:
                ds.RepetitionTime, ds.EchoTime = tr, te
            if ti is not None:
                ds.InversionTime = ti
            if series.b_value is not None:
                ds.DiffusionBValue = series.b_value
        for k in range(acq.n_slices):
            ds.file_meta = _file_meta(sop_class, sop_uids[k_global])
            ds.SOPInstanceUID = sop_uids[k_global]
            ds.InstanceNumber = k_global + 1
            ds.ImagePositionPatient = [round(float(v), 6) for v in positions[k]]
            ds.SliceLocation = round(float(np.dot(positions[k], normal)), 6)
            ds.Rows, ds.Columns = acq.rows, acq.cols
            img = volume[k_global]
            if ct:
                stored, rep, intercept = encode_ct(img, study.vendor)
                ds.PixelRepresentation = rep
                ds.RescaleIntercept = intercept
            else:
                stored = encode_mr(img, scale)
            ds.PixelData = np.ascontiguousarray(stored).tobytes()
            yield ds
            k_global += 1


def _object_dataset(sop_class: str, sop_uid: str, base: dict, series_uid: str) -> Dataset:
    """A dataset with file meta, the study/patient attributes of ``base`` and its identifying UIDs."""
    ds = Dataset()
    ds.file_meta = _file_meta(sop_class, sop_uid)
    for key, value in base.items():
        setattr(ds, key, value)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.SeriesInstanceUID = series_uid
    return ds


def secondary_capture(study, series, base: dict, series_uid: str, sop_uid: str, image: np.ndarray) -> Dataset:
    """A dose page as vendors export it: a Secondary Capture picture of a table (not a volume)."""
    ds = _object_dataset(SECONDARY_CAPTURE, sop_uid, base, series_uid)
    ds.Modality = study.modality
    ds.ConversionType = "WSD"
    ds.SeriesNumber, ds.InstanceNumber = series.number, 1
    ds.SeriesDescription = series.description
    ds.ImageType = list(series.image_type)
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(image.astype(np.uint16)).tobytes()
    return ds


def dose_page(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A picture of a text table: rows of bright 'glyph' blocks on black."""
    img = np.zeros((rows, cols), dtype=np.uint16)
    for r0 in range(4, rows - 6, 8):
        c = 4
        while c < cols - 8:
            w = int(rng.integers(2, 7))
            img[r0 : r0 + 5, c : c + w] = 255 * (rng.random() < 0.85)
            c += w + int(rng.integers(1, 4))
    return img


def basic_text_sr(base: dict, series_uid: str, sop_uid: str, series_number: int, text: str) -> Dataset:
    """A Basic Text Structured Report (a non-image object that sits in a study)."""
    ds = _object_dataset(BASIC_TEXT_SR, sop_uid, base, series_uid)
    ds.Modality = "SR"
    ds.SeriesNumber, ds.InstanceNumber = series_number, 1
    ds.SeriesDescription = "Preliminary report"
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.CompletionFlag, ds.VerificationFlag = "PARTIAL", "UNVERIFIED"
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = "121070", "DCM", "Findings"
    ds.ConceptNameCodeSequence = [concept]
    item = Dataset()
    item.RelationshipType, item.ValueType, item.TextValue = "CONTAINS", "TEXT", text
    item.ConceptNameCodeSequence = [concept]
    ds.ContentSequence = [item]
    return ds


def encapsulated_pdf(base: dict, series_uid: str, sop_uid: str, series_number: int, pdf_bytes: bytes) -> Dataset:
    """A scanned requisition stored as Encapsulated PDF (another non-image object)."""
    ds = _object_dataset(ENCAPSULATED_PDF, sop_uid, base, series_uid)
    ds.Modality = "DOC"
    ds.SeriesNumber, ds.InstanceNumber = series_number, 1
    ds.SeriesDescription = "Requisition"
    ds.ConversionType = "SD"
    ds.BurnedInAnnotation = "YES"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.DocumentTitle = "Imaging requisition"
    ds.EncapsulatedDocument = pdf_bytes + (b"\0" if len(pdf_bytes) % 2 else b"")
    return ds


def dicomdir_dataset(sop_uid: str, fileset_id: str) -> Dataset:
    """A (record-less) DICOMDIR, as exports from media often carry at their root."""
    ds = Dataset()
    ds.file_meta = _file_meta(MEDIA_STORAGE_DIRECTORY, sop_uid)
    ds.FileSetID = fileset_id
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.FileSetConsistencyFlag = 0
    ds.DirectoryRecordSequence = []
    return ds
