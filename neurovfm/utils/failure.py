"""What a failure may say under ``results/``: a reason code from a fixed vocabulary and a PHI-free detail.

Exception messages quote paths (export folders are often named after patients) and sometimes header
values, so nothing under ``results/`` (ledgers, sidecars, summaries, the logs under ``results/{run}/logs/``)
is ever built from one. :func:`describe` turns any exception into a :class:`Failure` whose ``detail`` is
built from the code's fixed text, numbers our own code computed (:class:`Failed`) and keyed hashes;
:func:`keep_raw` appends the raw message (and traceback) to ``private/{run}/errors/{stage}.log`` for the
person debugging. ``transient`` reasons (the file system, not the data) are retried by a rerun.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import re
import traceback
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Reason:
    transient: bool
    text: str


# Failures of a run or of one unit of work (a file, a series, a shard). Ledger codes of the ingest and
# preprocessing stages that describe the data itself are listed in LEDGER_CODES below.
VOCABULARY: dict[str, Reason] = {
    # the file system: retried by a rerun
    "file_missing": Reason(True, "a file is missing (moved or removed since it was listed)"),
    "permission_denied": Reason(True, "a file or folder cannot be opened: permission denied"),
    "io_error": Reason(True, "input/output error"),
    "disk_full": Reason(True, "no space left on the device or file size limit reached while writing"),
    "unexpected_error": Reason(True, "an unexpected error (its traceback is kept in the private folder, errors/)"),
    # the data: not retried unless the files change
    "truncated_file": Reason(False, "the file is shorter than its header says (truncated)"),
    "not_dicom": Reason(False, "the file is not DICOM (no DICM preamble and no data set at the start)"),
    "unreadable_dicom": Reason(False, "the DICOM header could not be parsed"),
    "pixel_decode_failed": Reason(False, "the pixel data could not be decoded"),
    "geometry_mismatch": Reason(False, "a slice does not match the series geometry recorded at ingest"),
    "unreadable_nifti": Reason(False, "the NIfTI file could not be read"),
    "not_3d": Reason(False, "the image is not three-dimensional"),
    # a merge of scattered jobs (ingest chunks, preprocessing shards, feature parts): rerun the missing jobs
    "incomplete_parts": Reason(False, "a merge found one of its chunk or shard parts missing, extra or stale"),
    # what the user gave: the run stops with a one-line message
    "invalid_config": Reason(False, "the configuration does not match the schema"),
    "bad_input_path": Reason(False, "an input path does not exist or is not of the expected kind"),
    "missing_column": Reason(False, "an input table lacks a required column"),
    "empty_export": Reason(False, "the export holds no DICOM file"),
    "no_includable_series": Reason(False, "no series of the export could be included"),
    "missing_key": Reason(False, "the de-identification key is not set"),
}

# Ledger reasons that describe the data (ingest and preprocessing; docs/dataset.md, "Tables"); never retried.
LEDGER_CODES = frozenset(
    {
        "not_dicom",
        "unreadable_dicom",
        "unreadable_file",
        "dicomdir",
        "non_image_sop_class",
        "unsupported_modality",
        "unsupported_pixel_format",
        "multiframe_unsupported",
        "truncated_pixel_data",
        "duplicate_instance",
        "duplicate_positions",
        "missing_geometry",
        "mixed_orientations",
        "inconsistent_dimensions",
        "missing_slices",
        "irregular_spacing",
        "excessive_tilt",
        "too_few_slices",
        "localizer",
        "derived",
        "series_study_conflict",
        "no_study_date",
        "after_test_window",
        "missing_file",
        "unreadable_nifti",
        "not_3d",
        "not_in_csv",
        "bad_affine",
        "absurd_spacing",
        "absurd_extent",
        "smaller_than_patch",
        "missing_files",
        "unreadable_pixels",
        "shape_mismatch",
        "non_finite_values",
        "constant_image",
        "no_foreground",
        "unknown_split",
        "unknown_modality",
    }
)

DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# Writers that report a failed write (ENOSPC, EFBIG, EDQUOT) as their own RuntimeError: torch.save's zip writer
# ("file write failed", or a position check of inline_container.cc after a short write) and safetensors
# (an Rust io::Error with the errno).
_WRITE_FAILED = re.compile(
    r"file write failed|PytorchStreamWriter failed writing|inline_container\.cc:\d+\]\s*\.\s*"
    r"unexpected pos|Os \{ code: (%s)," % "|".join(str(e) for e in sorted(DISK_FULL_ERRNOS))
)


class Failed(Exception):
    """A failure our own code diagnosed: ``reason`` is a vocabulary code, ``detail`` PHI-free text built only
    from fixed words and numbers (never a path, a header value or another exception's message)."""

    def __init__(self, reason: str, detail: str = "", private: str | None = None):
        check(reason)
        super().__init__(private or (f"{reason}: {detail}" if detail else reason))
        self.reason, self.detail = reason, detail
        self.private = private  # fuller message for stderr and private/ (may name the user's paths)


@dataclass(frozen=True)
class Failure:
    reason: str
    detail: str
    transient: bool

    def line(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


def check(reason: str) -> str:
    """``reason`` if it is a known code, else ValueError (the vocabulary is closed)."""
    if reason not in VOCABULARY and reason not in LEDGER_CODES:
        raise ValueError(f"unknown failure reason {reason!r}: add it to neurovfm.utils.failure")
    return reason


def is_transient(reason: str) -> bool:
    return check(reason) in VOCABULARY and VOCABULARY[reason].transient


def _errno_reason(exc: BaseException) -> str | None:
    """Reason of an OSError (or anything in its cause chain), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError):
            if exc.errno in DISK_FULL_ERRNOS:
                return "disk_full"
            if isinstance(exc, FileNotFoundError) or exc.errno == errno.ENOENT:
                return "file_missing"
            if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
                return "permission_denied"
            return "io_error"
        if isinstance(exc, RuntimeError) and _WRITE_FAILED.search(str(exc)):
            return "disk_full"
        exc = exc.__cause__ or exc.__context__
    return None


def describe(exc: BaseException, subject: str = "") -> Failure:
    """The reason code and PHI-free detail of ``exc``. ``subject``: a keyed hash or fixed name of what failed
    (a file id, a series id, a stage), appended to the detail; never a path."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and (reason in VOCABULARY or reason in LEDGER_CODES):
        detail = (
            exc.detail
            if isinstance(getattr(exc, "detail", None), str)
            else VOCABULARY.get(reason, Reason(False, "")).text
        )
    else:
        reason = _errno_reason(exc) or "unexpected_error"
        detail = VOCABULARY[reason].text
        if reason == "unexpected_error":
            detail = f"{type(exc).__name__}: {detail}"
    if subject:
        detail = f"{detail} ({subject})" if detail else subject
    return Failure(reason, detail, is_transient(reason))


def keep_raw(private_dir: str | os.PathLike | None, stage: str, exc: BaseException, subject: str = "") -> Path | None:
    """Append the raw message and traceback of ``exc`` to ``private_dir/errors/{stage}.log`` (PHI allowed
    there: it is the private workspace). Returns the log's path (None without a private folder)."""
    if private_dir is None:
        return None
    path = Path(private_dir) / "errors" / f"{stage}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"--- {dt.datetime.now().isoformat(timespec='seconds')} {stage} {subject}\n")
            fh.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    except OSError:
        return None  # a full disk must not hide the original failure
    return path


class IncompleteParts(Failed):
    """A merge of scattered jobs refuses its inputs; ``detail`` names the chunk or shard (numbers only)."""

    def __init__(self, detail: str):
        super().__init__("incomplete_parts", detail)
