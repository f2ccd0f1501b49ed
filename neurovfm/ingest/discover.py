"""Find every file of an export and read the kept header fields of each, in parallel.

``read_header`` never raises: a file that cannot be used comes back with a ledger reason code and a
fixed, PHI-free detail text (exception messages can quote header values or paths, so they are not
copied).
"""

from __future__ import annotations

import logging
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from typing import Iterable, Iterator

import pydicom
from pydicom.errors import InvalidDicomError

from neurovfm.ingest.headers import SPECIFIC_TAGS, extract
from neurovfm.utils.failure import describe
from neurovfm.utils.progress import Progress

log = logging.getLogger("neurovfm")

DICOMDIR_SOP = "1.2.840.10008.1.3.10"
IMAGE_SOPS = {"1.2.840.10008.5.1.4.1.1.2": "CT", "1.2.840.10008.5.1.4.1.1.4": "MR"}
MULTIFRAME_SOPS = {
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT
    "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR
    "1.2.840.10008.5.1.4.1.1.4.3",  # Enhanced MR Color
    "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR
}
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
UNCOMPRESSED_TS = {
    "1.2.840.10008.1.2": (True, True),  # implicit VR little endian
    "1.2.840.10008.1.2.1": (False, True),  # explicit VR little endian
    "1.2.840.10008.1.2.2": (False, False),  # explicit VR big endian
}
_RAW_FIRST_GROUPS = (0x0002, 0x0008)  # a DICOM stream without preamble starts with one of these groups


def walk(root: str) -> tuple[list[str], int]:
    """Relative paths of all regular files under ``root`` (sorted), and the number of symbolic links
    skipped. Links are never followed, so link loops cannot trap the walk."""
    files: list[str] = []
    links = 0
    stack = [root]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as it:
            for entry in it:
                if entry.is_symlink():
                    links += 1
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    files.append(os.path.relpath(entry.path, root))
    files.sort()
    return files, links


def _fail(rel: str, reason: str, detail: str) -> dict:
    return {"path": rel, "reason": reason, "detail": detail}


def _expected_pixel_bytes(rec: dict) -> int | None:
    rows, cols, bits = rec.get("rows"), rec.get("cols"), rec.get("bits_allocated")
    if not rows or not cols or not bits:
        return None
    n = rows * cols * (rec.get("samples_per_pixel") or 1) * (rec.get("n_frames") or 1)
    return (n * bits + 7) // 8


def _pixel_check(fp, file_size: int, ts: str, rec: dict) -> str | None:
    """Problem with the pixel data (a detail text), or None. ``fp`` sits where the header read stopped:
    at the start of the pixel data element, or at the end of the file if there is none."""
    start = fp.tell()
    if file_size - start < 8:
        return "no pixel data element (file ends after the header)"
    if ts not in UNCOMPRESSED_TS:
        return None  # encapsulated/deflated: the byte count is not predictable from the header
    implicit, little = UNCOMPRESSED_TS[ts]
    head = fp.read(12)
    order = "little" if little else "big"
    if implicit:
        length, value_start = int.from_bytes(head[4:8], order), start + 8
    else:
        length, value_start = int.from_bytes(head[8:12], order), start + 12
    expected = _expected_pixel_bytes(rec)
    if expected is None:
        return None
    available = file_size - value_start
    if length != 0xFFFFFFFF and length < expected:
        return f"pixel data element holds {length} bytes, the image needs {expected}"
    if available < expected:
        return f"file holds {max(available, 0)} pixel bytes, the image needs {expected}"
    return None


def read_header(root: str, rel: str, modalities: tuple[str, ...] = ("CT", "MR")) -> dict:
    """Header record of one file, or a record with ``reason`` set (a ledger code)."""
    path = os.path.join(root, rel)
    try:
        with open(path, "rb") as fp:
            file_size = os.fstat(fp.fileno()).st_size
            head = fp.read(132)
            part10 = len(head) == 132 and head[128:132] == b"DICM"
            if not part10 and (len(head) < 8 or int.from_bytes(head[:2], "little") not in _RAW_FIRST_GROUPS):
                return _fail(rel, "not_dicom", "no DICM preamble and no DICOM data set at the start")
            fp.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=SPECIFIC_TAGS, force=not part10)
                media_sop = str(ds.file_meta.get("MediaStorageSOPClassUID", "") or "") if ds.file_meta else ""
                rec, bad = extract(ds)
            ts = str(ds.file_meta.get("TransferSyntaxUID", "") or "") if ds.file_meta else ""
            if not ts:
                ts = (
                    "1.2.840.10008.1.2"
                    if ds.is_implicit_VR
                    else ("1.2.840.10008.1.2.1" if ds.is_little_endian else "1.2.840.10008.1.2.2")
                )
            sop = rec.get("sop_class_uid") or media_sop
            if sop == DICOMDIR_SOP or media_sop == DICOMDIR_SOP:
                return _fail(rel, "dicomdir", "DICOMDIR (media storage directory)")
            for key in ("study_uid", "series_uid", "sop_instance_uid"):
                if not rec.get(key):
                    return _fail(rel, "unreadable_dicom", f"no {key} in the header")
            if sop in MULTIFRAME_SOPS:
                return _fail(rel, "multiframe_unsupported", "enhanced multi-frame image (not supported)")
            if sop not in IMAGE_SOPS:
                if (
                    sop
                    and not sop.startswith(SECONDARY_CAPTURE_PREFIX)
                    and "Image Storage" in pydicom.uid.UID(sop).name
                    and rec.get("modality") not in modalities
                ):
                    return _fail(rel, "unsupported_modality", f"{rec.get('modality')} image")
                name = pydicom.uid.UID(sop).name if sop else "no SOP class"
                return _fail(rel, "non_image_sop_class", name)
            if rec.get("modality") not in modalities:
                return _fail(rel, "unsupported_modality", f"modality {rec.get('modality')!r}")
            if (rec.get("n_frames") or 1) > 1:
                return _fail(rel, "multiframe_unsupported", f"{rec['n_frames']} frames in one image")
            if (rec.get("samples_per_pixel") or 1) != 1:
                return _fail(rel, "unsupported_pixel_format", f"{rec['samples_per_pixel']} samples per pixel")
            problem = _pixel_check(fp, file_size, ts, rec)
            if problem:
                return _fail(rel, "truncated_pixel_data", problem)
    except (
        InvalidDicomError,
        EOFError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        NotImplementedError,
        OverflowError,
        UnicodeError,
        LookupError,
    ) as exc:
        return _fail(rel, "unreadable_dicom", f"header could not be parsed ({type(exc).__name__})")
    except OSError as exc:  # the file system, not the data: file_missing, permission_denied, io_error (transient)
        failure = describe(exc)
        return _fail(rel, failure.reason, failure.detail)
    rec["path"] = rel
    rec["reason"] = None
    rec["malformed"] = tuple(bad)
    return rec


def _read_chunk(args: tuple[str, list[str], tuple[str, ...]]) -> list[dict]:
    root, rels, modalities = args
    return [read_header(root, rel, modalities) for rel in rels]


def read_headers(
    root: str,
    rels: list[str],
    workers: int = 1,
    chunk_size: int = 256,
    modalities: tuple[str, ...] = ("CT", "MR"),
    progress_every_s: float = 10.0,
) -> Iterator[dict]:
    """Header records of ``rels`` in input order, streamed. ``workers`` > 1 uses a process pool with at
    most ``2 * workers`` chunks in flight, so memory stays bounded whatever the export size."""
    prog = Progress(len(rels), "header read", log, every_s=progress_every_s, unit="files")
    chunks = [rels[i : i + chunk_size] for i in range(0, len(rels), chunk_size)]
    if workers <= 1:
        for chunk in chunks:
            for rec in _read_chunk((root, chunk, modalities)):
                yield rec
            prog.update(len(chunk))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            yield from _bounded_map(pool, ((root, c, modalities) for c in chunks), 2 * workers, prog)
    prog.close()


def _bounded_map(pool, jobs: Iterable, in_flight: int, prog: Progress) -> Iterator[dict]:
    pending = []
    jobs = iter(jobs)
    for job in jobs:
        pending.append(pool.submit(_read_chunk, job))
        if len(pending) >= in_flight:
            break
    while pending:
        result = pending.pop(0).result()
        nxt = next(jobs, None)
        if nxt is not None:
            pending.append(pool.submit(_read_chunk, nxt))
        prog.update(len(result))
        yield from result
