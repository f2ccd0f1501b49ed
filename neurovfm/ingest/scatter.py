"""Ingestion spread over K jobs: one walk, K header-reading chunks, one merge.

1. :func:`write_lists` walks the export once and writes its sorted file list as K contiguous pieces
   (``lists/{k}-of-{K}.jsonl``: a JSON header line, then one JSON-quoted relative path per line).
2. :func:`read_chunk` reads the headers of one piece into ``headers/{k}-of-{K}.pkl`` (a pickled header
   dict, then batches of header records, then an end marker). Records hold PHI (paths, names, IDs): both
   files live under ``private/{run}/ingest/``, never under ``results/``.
3. :func:`merge` checks that the chunks are exactly ``0..K-1`` of one listing, each complete, and folds
   their records in file-list order into :func:`neurovfm.ingest.run.ingest_records`, the code the one-job
   ingest runs: the outputs are byte-identical whatever K.

Every file is written atomically (temporary sibling, then rename), so a cancelled chunk job leaves no file
that looks finished and a rerun redoes exactly the missing chunks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from pathlib import Path
from typing import Iterator

from neurovfm.ingest.discover import read_headers, walk
from neurovfm.utils.atomic import atomic_open
from neurovfm.utils.failure import IncompleteParts

log = logging.getLogger("neurovfm")

LIST_FORMAT = "neurovfm-ingest-list"
CHUNK_FORMAT = "neurovfm-ingest-headers"
VERSION = 1
BATCH = 4096  # records per pickled batch (bounded memory while writing and reading)
_END = "end"


class ScatterError(IncompleteParts):
    """Chunk files that do not make up one complete ingestion (missing, extra, truncated, mixed)."""


def chunk_name(k: int, n_chunks: int) -> str:
    return f"{k}-of-{n_chunks}"


def bounds(n_files: int, n_chunks: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) of each chunk; sizes differ by at most one file."""
    return [(k * n_files // n_chunks, (k + 1) * n_files // n_chunks) for k in range(n_chunks)]


def listing_digest(files: list[str], links: int) -> str:
    h = hashlib.sha256(f"{len(files)}:{links}\n".encode())
    for rel in files:
        h.update(rel.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()


def write_lists(dicom_dir: str | Path, list_paths: list[str | Path]) -> dict:
    """Walk ``dicom_dir`` once and write its file list as ``len(list_paths)`` contiguous pieces."""
    n_chunks = len(list_paths)
    if n_chunks < 1:
        raise ValueError("at least one chunk")
    files, links = walk(str(dicom_dir))
    digest = listing_digest(files, links)
    for k, ((start, stop), path) in enumerate(zip(bounds(len(files), n_chunks), list_paths)):
        head = {
            "format": LIST_FORMAT,
            "version": VERSION,
            "listing": digest,
            "chunk": k,
            "n_chunks": n_chunks,
            "start": start,
            "n_files": stop - start,
            "n_files_total": len(files),
            "symlinks_skipped": links,
        }
        with atomic_open(path, "w", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(json.dumps(head) + "\n")
            for rel in files[start:stop]:
                fh.write(json.dumps(rel, ensure_ascii=False) + "\n")
    log.info("ingest: %d files found (%d symbolic links skipped), listed in %d chunks", len(files), links, n_chunks)
    return {"n_files": len(files), "symlinks_skipped": links, "n_chunks": n_chunks, "listing": digest}


def read_list(path: str | Path) -> tuple[dict, list[str]]:
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        head = json.loads(fh.readline())
        if head.get("format") != LIST_FORMAT or head.get("version") != VERSION:
            raise ScatterError(f"ingest merge: {Path(path).name} is not a {LIST_FORMAT} v{VERSION} file list")
        files = [json.loads(line) for line in fh]
    if len(files) != head["n_files"]:
        raise ScatterError(
            f"ingest: file list {Path(path).name} holds {len(files)} paths, its header says {head['n_files']}"
        )
    return head, files


def read_chunk(dicom_dir: str | Path, list_path: str | Path, out_path: str | Path, cfg: dict, workers: int = 1) -> dict:
    """Read the headers of one piece of the file list into ``out_path``; returns the chunk's header."""
    icfg = cfg["ingest"]
    head, files = read_list(list_path)
    out_head = {**head, "format": CHUNK_FORMAT}
    out_path = Path(out_path)
    for stale in out_path.parent.glob(f".{out_path.name}.*.tmp"):  # left by a killed attempt (SIGTERM, SIGKILL)
        stale.unlink()
    n = 0
    with atomic_open(out_path, "wb") as fh:
        pickle.dump(out_head, fh, protocol=pickle.HIGHEST_PROTOCOL)
        batch: list[dict] = []
        for rec in read_headers(
            str(dicom_dir),
            files,
            workers=max(1, int(workers or 1)),
            chunk_size=int(icfg["chunk_size"]),
            modalities=tuple(icfg["modalities"]),
        ):
            batch.append(rec)
            n += 1
            if len(batch) >= BATCH:
                pickle.dump(batch, fh, protocol=pickle.HIGHEST_PROTOCOL)
                batch = []
        if batch:
            pickle.dump(batch, fh, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.dump(_END, fh, protocol=pickle.HIGHEST_PROTOCOL)
    if n != head["n_files"]:  # read_headers yields one record per file; anything else is a bug
        raise ScatterError(f"ingest chunk {chunk_name(head['chunk'], head['n_chunks'])}: {n} records for {n} files")
    log.info("ingest chunk %s: %d headers read", chunk_name(head["chunk"], head["n_chunks"]), n)
    return out_head


def _chunk_head(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            head = pickle.load(fh)
    except (OSError, EOFError, pickle.UnpicklingError) as err:
        raise ScatterError(f"ingest merge: chunk {path.name} cannot be read ({type(err).__name__})") from None
    if not isinstance(head, dict) or head.get("format") != CHUNK_FORMAT or head.get("version") != VERSION:
        raise ScatterError(f"ingest merge: {path.name} is not a {CHUNK_FORMAT} v{VERSION} chunk")
    return head


def check_chunks(chunk_paths: list[str | Path], n_chunks: int) -> list[tuple[Path, dict]]:
    """The chunks ordered 0..K-1, after checking that they are exactly the K chunks of one listing."""
    heads = [(Path(p), _chunk_head(Path(p))) for p in chunk_paths]
    listings = {h["listing"] for _, h in heads}
    if len(listings) > 1:
        raise ScatterError(f"ingest merge: the chunks come from {len(listings)} different file listings; rerun ingest")
    by_k: dict[int, tuple[Path, dict]] = {}
    for path, head in heads:
        if head["n_chunks"] != n_chunks or not 0 <= head["chunk"] < n_chunks:
            raise ScatterError(
                f"ingest merge: extra chunk {path.name} (chunk {head['chunk']} of {head['n_chunks']}, "
                f"expected {n_chunks} chunks)"
            )
        if head["chunk"] in by_k:
            raise ScatterError(f"ingest merge: chunk {head['chunk']} of {n_chunks} given twice")
        by_k[head["chunk"]] = (path, head)
    missing = [k for k in range(n_chunks) if k not in by_k]
    if missing:
        names = ", ".join(chunk_name(k, n_chunks) for k in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ScatterError(f"ingest merge: {len(missing)} of {n_chunks} header chunks missing ({names})")
    ordered = [by_k[k] for k in range(n_chunks)]
    start = 0
    for path, head in ordered:
        if head["start"] != start:
            raise ScatterError(f"ingest merge: chunk {path.name} starts at file {head['start']}, expected {start}")
        start += head["n_files"]
    if start != ordered[0][1]["n_files_total"]:
        raise ScatterError(f"ingest merge: the chunks hold {start} files, the listing {ordered[0][1]['n_files_total']}")
    return ordered


def iter_records(ordered: list[tuple[Path, dict]]) -> Iterator[dict]:
    """Every header record of the chunks, in file-list order; a truncated chunk raises :class:`ScatterError`."""
    for path, head in ordered:
        n = 0
        with open(path, "rb") as fh:
            pickle.load(fh)
            while True:
                try:
                    item = pickle.load(fh)
                except (EOFError, pickle.UnpicklingError):
                    raise ScatterError(f"ingest merge: chunk {path.name} is truncated; rerun its job") from None
                if item == _END:
                    break
                n += len(item)
                yield from item
        if n != head["n_files"]:
            raise ScatterError(f"ingest merge: chunk {path.name} holds {n} records, its header says {head['n_files']}")


def merge(
    chunk_paths: list[str | Path],
    n_chunks: int,
    reports_csv: str | None,
    out_dir,
    private_dir,
    cfg: dict,
    key: bytes,
) -> dict:
    """The ingest outputs from K header chunks (same files, same bytes as the one-job ingest)."""
    from neurovfm.ingest.run import ingest_records

    ordered = check_chunks(chunk_paths, n_chunks)
    head = ordered[0][1]
    log.info("ingest: merging %d header chunks of %d files", n_chunks, head["n_files_total"])
    return ingest_records(
        iter_records(ordered),
        head["n_files_total"],
        head["symlinks_skipped"],
        reports_csv,
        out_dir,
        private_dir,
        cfg,
        key,
    )
