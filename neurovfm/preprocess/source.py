"""Where the pixels of a series come from: the ingest loaders, reading paths relative to the export root.

``files.csv`` can hold hundreds of millions of rows at health-system scale, so the parent process never
loads it: :func:`index_files_csv` records, per series, the byte offset of its first row and its row
count (rows of a series are contiguous, as ingest writes them), and each worker reads only its own rows.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from pathlib import Path

import numpy as np

FILES_COLUMNS = ("file_id", "series_id", "slice_index", "path")


class FilesTableError(ValueError):
    """files.csv does not have the expected columns or a series' rows are not contiguous."""


def index_files_csv(path: str | Path) -> dict[str, tuple[int, int]]:
    """series_id -> (byte offset of its first row, number of rows)."""
    out: dict[str, tuple[int, int]] = {}
    with open(path, "rb") as fh:
        header = next(csv.reader([fh.readline().decode("utf-8")]))
        if tuple(header[:4]) != FILES_COLUMNS:
            raise FilesTableError(f"{path}: expected columns {FILES_COLUMNS}, found {header}")
        current, start, count = None, 0, 0
        while True:
            pos = fh.tell()
            line = fh.readline()
            if not line:
                break
            sid = line.split(b",", 2)[1].decode("utf-8")
            if sid != current:
                if current is not None:
                    out[current] = (start, count)
                if sid in out:
                    raise FilesTableError(f"{path}: rows of series {sid} are not contiguous")
                current, start, count = sid, pos, 0
            count += 1
        if current is not None:
            out[current] = (start, count)
    return out


def read_rows(files_csv: str | Path, offset: int, n_rows: int) -> list[tuple[str, str]]:
    """(file_id, path) of ``n_rows`` rows from ``offset``, sorted by slice_index."""
    with open(files_csv, "rb") as fh:
        fh.seek(offset)
        lines = [fh.readline().decode("utf-8") for _ in range(n_rows)]
    rows = list(csv.reader(io.StringIO("".join(lines))))
    return [(r[0], r[3]) for r in sorted(rows, key=lambda r: int(r[2]))]


def read_paths(files_csv: str | Path, offset: int, n_rows: int) -> list[str]:
    """The ``path`` column of ``n_rows`` rows from ``offset``, sorted by slice_index."""
    return [path for _, path in read_rows(files_csv, offset, n_rows)]


def stamp(paths) -> str:
    """A digest of the size and modification time of ``paths`` (-1 where a file cannot be seen): it changes
    when a file is restored, replaced or re-exported, so an exclusion for bad data is retried then (and only
    then). A digest, not the values, so no file time reaches results/."""
    h = hashlib.sha256()
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{st.st_size}:{st.st_mtime_ns};".encode())
        except OSError:
            h.update(b"-1;")
    return h.hexdigest()[:16]


def load_dicom(paths: list[Path], affine: np.ndarray, shape) -> np.ndarray:
    from neurovfm.ingest.volume import load_series_volume

    return load_series_volume([str(p) for p in paths], affine)


def load_nifti(paths: list[Path], affine: np.ndarray, shape) -> np.ndarray:
    from neurovfm.ingest.volume import VolumeError, load_nifti_volume

    if len(paths) != 1:
        raise VolumeError(f"a NIfTI volume is one file, files.csv lists {len(paths)}")
    array, _ = load_nifti_volume(str(paths[0]))
    return array


LOADERS = {"dicom": load_dicom, "nifti": load_nifti}
