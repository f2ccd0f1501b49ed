"""The DICOM header fields ingestion keeps, and their conversion to plain Python values.

Only these tags are parsed (``specific_tags``); everything else in a header is skipped unread. The
record is a flat dict of str/int/float/tuple values so it pickles cheaply between processes.
Fields marked PHI are kept only in memory, to scrub text and compute age; they are never written.
"""

from __future__ import annotations

import struct

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

# (record key, DICOM keyword or tag, kind). kind: str | float | int | floats | strs | tag
FIELDS: tuple[tuple[str, object, str], ...] = (
    ("sop_class_uid", "SOPClassUID", "str"),
    ("sop_instance_uid", "SOPInstanceUID", "str"),
    ("modality", "Modality", "str"),
    ("study_uid", "StudyInstanceUID", "str"),
    ("series_uid", "SeriesInstanceUID", "str"),
    ("study_date", "StudyDate", "str"),
    ("series_description", "SeriesDescription", "str"),
    ("image_type", "ImageType", "strs"),
    ("manufacturer", "Manufacturer", "str"),
    ("field_strength", "MagneticFieldStrength", "float"),
    ("institution", "InstitutionName", "str"),
    ("contrast_agent", "ContrastBolusAgent", "str"),
    ("scanning_sequence", "ScanningSequence", "strs"),
    ("ipp", "ImagePositionPatient", "floats"),
    ("iop", "ImageOrientationPatient", "floats"),
    ("pixel_spacing", "PixelSpacing", "floats"),
    ("rows", "Rows", "int"),
    ("cols", "Columns", "int"),
    ("samples_per_pixel", "SamplesPerPixel", "int"),
    ("bits_allocated", "BitsAllocated", "int"),
    ("n_frames", "NumberOfFrames", "int"),
    ("slice_thickness", "SliceThickness", "float"),
    ("spacing_between_slices", "SpacingBetweenSlices", "float"),
    ("instance_number", "InstanceNumber", "int"),
    ("echo_numbers", "EchoNumbers", "str"),
    ("diffusion_b_value", Tag(0x0018, 0x9087), "float"),
    ("temporal_position", "TemporalPositionIdentifier", "str"),
    ("acquisition_number", "AcquisitionNumber", "str"),
    ("sex", "PatientSex", "str"),
    ("patient_age", "PatientAge", "str"),
    ("ethnicity", "EthnicGroup", "str"),
    # PHI: used for hashing, age and scrubbing, never written
    ("patient_id", "PatientID", "str"),
    ("patient_name", "PatientName", "str"),
    ("birth_date", "PatientBirthDate", "str"),
    ("accession", "AccessionNumber", "str"),
    ("address", "PatientAddress", "str"),
    ("other_patient_ids", "OtherPatientIDs", "strs"),
)

PHI_KEYS = ("patient_id", "patient_name", "birth_date", "accession", "address", "other_patient_ids")

_TAGGED = tuple((key, Tag(tag), kind) for key, tag, kind in FIELDS)
_CHARSET = Tag("SpecificCharacterSet")
SPECIFIC_TAGS = sorted({t for _, t, _ in _TAGGED} | {Tag("SpecificCharacterSet")})


_BINARY_INT = {"US": (2, False), "SS": (2, True), "UL": (4, False), "SL": (4, True)}
_BINARY_FLOAT = {"FD": (8, "d"), "FL": (4, "f")}
_UTF8_CHARSETS = {"ISO_IR 192", "ISO 2022 IR 192"}


def _text(value, kind: str):
    """Convert a header value given as text (backslash-separated multi-values) or a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {
            "float": float(value),
            "int": int(value),
            "floats": (float(value),),
            "str": str(value),
            "strs": (str(value),),
        }[kind]
    if not isinstance(value, str):
        # an already-converted pydicom value (MultiValue, PersonName, DSfloat, ...)
        if hasattr(value, "__len__") and not isinstance(value, (bytes, bytearray)):
            value = "\\".join(str(v) for v in value)
        else:
            value = str(value)
    text = value.replace("\x00", "").strip()
    if not text:
        return None
    if kind == "str":
        return text
    parts = [p.strip() for p in text.split("\\")]
    if kind == "strs":
        return tuple(p for p in parts if p)
    if kind == "float":
        return float(parts[0])
    if kind == "int":
        return int(float(parts[0]))
    if kind == "floats":
        return tuple(float(p) for p in parts)
    raise ValueError(f"unknown field kind {kind!r}")


def _raw(ds, tag, encoding: str, order: str):
    """Value of ``tag`` straight from the undecoded element when possible: pydicom's value conversion
    (MultiValue, DSfloat validation) costs more than the whole file parse for a header-only read."""
    store = getattr(ds, "_dict", None)
    elem = store.get(tag) if store is not None else ds.get(tag)
    if elem is None:
        return None
    if isinstance(elem, RawDataElement):
        value = elem.value
        if value is None:
            return None
        vr = elem.VR or dictionary_VR(tag)
        if vr in _BINARY_INT:
            size, signed = _BINARY_INT[vr]
            return int.from_bytes(value[:size], order, signed=signed) if len(value) >= size else None
        if vr in _BINARY_FLOAT:
            size, code = _BINARY_FLOAT[vr]
            return (
                struct.unpack(("<" if order == "little" else ">") + code, value[:size])[0]
                if len(value) >= size
                else None
            )
        if vr == "SQ":
            return None
        return value.decode(encoding, errors="replace")
    return elem.value


def extract(ds) -> tuple[dict, list[str]]:
    """Plain-value record of the kept fields of ``ds``; also the names of fields whose value was
    present but malformed (they are recorded as missing, the caller decides what that means)."""
    record: dict = {}
    bad: list[str] = []
    charset = ds._dict.get(_CHARSET) if hasattr(ds, "_dict") else None
    cs_value = (_raw(ds, _CHARSET, "latin-1", "little") or "") if charset is not None else ""
    encoding = "utf-8" if any(c.strip() in _UTF8_CHARSETS for c in str(cs_value).split("\\")) else "latin-1"
    little = ds.original_encoding[1] if hasattr(ds, "original_encoding") else True
    order = "little" if little in (True, None) else "big"
    for key, tag, kind in _TAGGED:
        value = None
        try:
            raw = _raw(ds, tag, encoding, order)
            value = _text(raw, kind) if raw is not None else None
        except (TypeError, ValueError, IndexError, KeyError):
            bad.append(key)
        record[key] = value
    return record, bad
