"""Atomic shard writing through ``numpy.memmap``.

A shard is first allocated as a hidden temporary sibling (``.shard-00000.bin.tmp``, sparse), records
are written into it at precomputed offsets (possibly by several processes at once: their byte ranges
are disjoint), the file is fsynced and renamed onto its final name, and only then its sidecar
(``shard-00000.json``: the shard's volume entries, exclusions, fingerprint) is written, atomically. A
shard counts as finished when its sidecar exists, names the same fingerprint (inputs, config, layout)
and the shard file has the recorded size, so a rerun after a kill redoes only unfinished shards. The
split's ``index.json`` is written after every shard has finished; readers refuse anything else.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from neurovfm.store.index import dumps
from neurovfm.utils.atomic import write_text


def temp_path(final: str | Path) -> Path:
    final = Path(final)
    return final.with_name(f".{final.name}.tmp")


def allocate(path: str | Path, nbytes: int) -> None:
    """Create (or truncate) ``path`` as a zero-filled (sparse) file of ``nbytes`` bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mm = np.memmap(path, dtype=np.uint8, mode="w+", shape=(int(nbytes),))
    mm.flush()
    del mm


def write_record(path: str | Path, offset: int, planes: list[np.ndarray], token_mask: np.ndarray) -> int:
    """Write one record (planes, then the token mask as bytes) at ``offset``; returns its size."""
    n_vox = planes[0].size
    nbytes = len(planes) * n_vox + token_mask.size
    mm = np.memmap(path, dtype=np.uint8, mode="r+", offset=int(offset), shape=(nbytes,))
    for p, plane in enumerate(planes):
        mm[p * n_vox : (p + 1) * n_vox] = plane.reshape(-1)
    mm[len(planes) * n_vox :] = token_mask.reshape(-1).astype(np.uint8)
    del mm  # dirty pages stay in the page cache; commit() fsyncs the whole file once
    return nbytes


def commit(tmp: str | Path, final: str | Path) -> None:
    """fsync the temporary shard and rename it onto ``final`` (then fsync the folder)."""
    tmp, final = Path(tmp), Path(final)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    dfd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_sidecar(path: str | Path, content: dict) -> None:
    write_text(path, dumps(content))


def finished(final: str | Path, sidecar: str | Path, fingerprint: str) -> dict | None:
    """The sidecar of a finished shard with this fingerprint, else None."""
    final, sidecar = Path(final), Path(sidecar)
    if not (final.is_file() and sidecar.is_file()):
        return None
    try:
        content = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if content.get("fingerprint") != fingerprint or final.stat().st_size != content.get("nbytes"):
        return None
    return content
