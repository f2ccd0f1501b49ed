"""Check what the user gave before any work starts, so a mistake ends as one line that says what to fix.

Each check raises :class:`neurovfm.utils.failure.Failed` with a user reason code (``bad_input_path``,
``missing_column``, ``empty_export``, ``no_includable_series``): its ``detail`` is PHI-free (it reaches
``results/{run}/logs/``), its ``private`` message names the path or the columns (stderr and
``private/{run}/errors/`` only).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from neurovfm.utils.failure import Failed

TOP_REASONS = 5  # reasons named in the message of an export without any includable series


def expand(path) -> Path:
    return Path(os.path.expandvars(str(path)))


def folder(path, what: str) -> Path:
    """``path`` (environment variables expanded) if it is an existing folder."""
    if path is None:
        raise Failed("bad_input_path", f"{what} is not configured", private=f"{what} is not configured")
    p = expand(path)
    if p.is_file():
        raise Failed(
            "bad_input_path",
            f"{what} is a file, not a folder",
            private=f"{what} {str(path)!r} is a file; give the folder that holds the export",
        )
    if not p.is_dir():
        raise Failed("bad_input_path", f"{what} does not exist", private=f"{what} {str(path)!r} does not exist")
    return p


def table(path, what: str, required: tuple[str, ...]) -> Path:
    """``path`` if it is a readable CSV with the ``required`` columns."""
    if path is None:
        raise Failed("bad_input_path", f"{what} is not configured", private=f"{what} is not configured")
    p = expand(path)
    if not p.is_file():
        kind = "a folder, not a CSV file" if p.is_dir() else "does not exist"
        raise Failed("bad_input_path", f"{what} {kind}", private=f"{what} {str(path)!r} {kind}")
    try:
        columns = list(pd.read_csv(p, nrows=0, dtype=str).columns)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise Failed(
            "missing_column",
            f"{what} has no header row of column names",
            private=f"{what} {str(path)!r} is not a CSV with a header row ({type(err).__name__})",
        ) from err
    missing = [c for c in required if c not in columns]
    if missing:
        raise Failed(
            "missing_column",
            f"{what} lacks required column(s) {', '.join(missing)}",
            private=f"{what} {str(path)!r} lacks required column(s) {', '.join(missing)}; "
            f"columns found: {', '.join(columns) or '(none)'}",
        )
    return p


def require_volumes(
    n_files_seen: int, n_volumes: int, excluded_by_reason: dict, allow_empty: bool, what: str = "DICOM"
) -> None:
    """Refuse an export without files or without any includable series (unless ``allow_empty``)."""
    if allow_empty or n_volumes > 0:
        return
    if n_files_seen == 0:
        msg = f"the export holds no {what} file (ingest.allow_empty: true accepts this)"
        raise Failed("empty_export", msg, private=msg)
    top = sorted(excluded_by_reason.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_REASONS]
    reasons = ", ".join(f"{k} {v}" for k, v in top)
    msg = (
        f"none of the {n_files_seen} files could be included (files by reason: {reasons}; "
        "ingest.allow_empty: true accepts this)"
    )
    raise Failed("no_includable_series", msg, private=msg)
