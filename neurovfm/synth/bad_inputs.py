"""Planted defects: the broken and odd files every real PACS export contains.

Per-study defects (a missing slice, a duplicated instance, a slice of another matrix size, a file cut
short inside its pixel data, non-image objects) are assigned to studies when the cohort is drawn and
applied while the study is written; export-level oddities (a corrupt file, non-DICOM files, a
DICOMDIR) are written once at the end. Every defect is recorded with the reason code ingest must
give it (the same codes ingest writes to its exclusion ledger).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from neurovfm.synth import dicom_writer as dw

# Reason codes shared with ingest.
REASONS = (
    "not_dicom",
    "unreadable_dicom",
    "non_image_sop_class",
    "dicomdir",
    "truncated_pixel_data",
    "missing_slices",
    "duplicate_instance",
    "inconsistent_dimensions",
    "localizer",
    "derived",
    "too_few_slices",
    "mixed_orientations",
    "excessive_tilt",
)
STUDY_DEFECTS = (
    "missing_slices",
    "duplicate_instance",
    "inconsistent_dimensions",
    "truncated_pixel_data",
    "non_image_sop_class",
    "excessive_tilt",
    "too_few_slices",
    "mixed_orientations",
)
_NEEDS = {"excessive_tilt": "CT", "mixed_orientations": "MR"}  # defects that exist in one modality only


def assign_study_defects(plans, rng: np.random.Generator, per_kind: int = 1) -> None:
    """Give ``per_kind`` studies each per-study defect, distinct studies while there are enough."""
    if not plans:
        return
    order = [int(i) for i in rng.permutation(len(plans))]
    used: set[int] = set()
    for kind in STUDY_DEFECTS:
        for _ in range(per_kind):
            fits = [i for i in order if _NEEDS.get(kind, plans[i].modality) == plans[i].modality]
            pool = [i for i in fits if i not in used] or fits
            if not pool:
                continue
            plans[pool[0]].bad_inputs.append(kind)
            used.add(pool[0])


def target_series(series_list, min_images: int):
    """The first included image series with enough images to lose one and stay a volume."""
    for s in series_list:
        if s.expected == "included" and s.role == "image" and len(s.acqs) == 1 and s.n_images >= min_images:
            return s
    return None


def plan_series_defect(kind: str, series_list, rng: np.random.Generator, min_slices: int) -> dict | None:
    """Mark one series for ``kind``; returns what to do when writing it (None if no series fits)."""
    s = target_series(series_list, min_slices + 3)
    if s is None:
        return None
    n = s.n_images
    if kind == "missing_slices":
        s.expected = "excluded:missing_slices"
        return {"kind": kind, "series": s.number, "drop": int(rng.integers(2, n - 2))}
    if kind == "inconsistent_dimensions":
        s.expected = "excluded:inconsistent_dimensions"
        return {"kind": kind, "series": s.number, "odd": int(rng.integers(1, n - 1))}
    if kind == "duplicate_instance":
        s.file_defects.append({"reason": "duplicate_instance", "n_files": 1})
        return {"kind": kind, "series": s.number, "copy": int(rng.integers(0, n))}
    if kind == "truncated_pixel_data":
        # an end slice, so the rest of the stack stays gap-free and is still included
        s.file_defects.append({"reason": "truncated_pixel_data", "n_files": 1})
        return {"kind": kind, "series": s.number, "truncate": 0 if rng.random() < 0.5 else n - 1}
    raise ValueError(f"{kind!r} is not a per-series defect")


def odd_matrix(image: np.ndarray) -> np.ndarray:
    """The same slice at another matrix size (8 rows cropped), as after a mid-series protocol change."""
    if image.shape[0] > 16:
        return image[4:-4, :]
    return np.pad(image, ((2, 2), (0, 0)))


def truncate_file(path: Path, rng: np.random.Generator, n_pixel_bytes: int) -> None:
    """Cut a written file short somewhere inside its pixel data (an interrupted transfer)."""
    size = path.stat().st_size
    cut = int(rng.integers(8, max(9, n_pixel_bytes // 2)))
    tmp = path.with_name(f".{path.name}.tmp")
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        dst.write(src.read(size - cut))
    os.replace(tmp, path)


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def corrupt_dicom_bytes(sop_uid: str) -> bytes:
    """A valid Part-10 preamble and meta header followed by a data set that cannot be parsed (a
    sequence whose first item breaks off mid element header), like a file damaged in transfer."""
    ds = Dataset()
    ds.file_meta = dw._file_meta(dw.CT_IMAGE, sop_uid)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    undefined = b"\xff\xff\xff\xff"
    return (
        buf.getvalue() + b"\x08\x00\x15\x11SQ\x00\x00" + undefined + b"\xfe\xff\x00\xe0" + undefined + b"\x08\x00\x50"
    )


def tiny_pdf(text: str) -> bytes:
    """A minimal one-page PDF (for an Encapsulated PDF object)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return out


def write_export_level(dicom_dir: Path, rng: np.random.Generator, seed: int) -> list[dict]:
    """DICOMDIR, a corrupt .dcm, a thumbnail .jpg and a .txt note; returns their truth records."""
    records = []

    def rel(p: Path) -> str:
        return p.relative_to(dicom_dir.parent).as_posix()

    def folder() -> Path:
        return dicom_dir / "".join(rng.choice(list("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"), 8))

    p = dicom_dir / "DICOMDIR"
    dw.write_dataset(dw.dicomdir_dataset(dw.make_uid(seed, "dicomdir"), "UMH_EXPORT"), p)
    records.append({"path": rel(p), "expected": "excluded:dicomdir", "what": "DICOMDIR"})
    p = folder() / "IM000017.dcm"
    _write_bytes(p, corrupt_dicom_bytes(dw.make_uid(seed, "corrupt")))
    records.append({"path": rel(p), "expected": "excluded:unreadable_dicom", "what": "corrupt DICOM header"})
    p = folder() / "thumbnail.jpg"
    _write_bytes(
        p, b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + rng.bytes(400) + b"\xff\xd9"
    )
    records.append({"path": rel(p), "expected": "excluded:not_dicom", "what": "JPEG thumbnail"})
    p = folder() / "export_log.txt"
    _write_bytes(p, b"Export job finished. Images transferred from PACS archive.\n")
    records.append({"path": rel(p), "expected": "excluded:not_dicom", "what": "text file"})
    return records
