"""The feature store: one folder per (encoder, split), ``results/{run}/features/{encoder}/{split}/``.

Files:

- ``chunk-NNNNN.bin``: float16 token features, C order ``[tokens, dim]``, entries back to back;
- ``chunk-NNNNN.coords.bin``: int16 token coordinates ``[tokens, 3]`` (slice, row, col token indices), same order;
- ``chunk-NNNNN.json``: the chunk's sidecar (its entries, sizes, fingerprint), written after both files;
- ``index.json``: written last, after every chunk has finished; readers refuse a folder without it.

An *entry* is one volume in one CT window (CT: one entry per window, each encoded as its own single-channel
pass; MR: one entry, window ``mri``). Index keys: ``format``, ``version``, ``split``, ``encoder``, ``model``
(configuration of the encoder), ``weights_sha256``, ``dim``, ``dtype``, ``coords_dtype``, ``coords_axes``,
``patch``, ``normalisation``, ``chunks`` (file, coords_file, n_tokens, nbytes, coords_nbytes, fingerprint) and
``entries`` (per entry: ``series_id``, ``study_id``, ``modality``, ``sequence``, ``window``, ``n_tokens``,
``chunk``, ``offset`` (bytes into the chunk's ``.bin``), ``coords_offset`` (bytes into its ``.coords.bin``),
``grid`` (token grid shape of the volume)). Studies never span two chunks, so one study's tokens are read from
one pair of files; ``numpy.memmap`` with the offsets reads them without our code.

Chunk files are written through a temporary sibling and renamed; a chunk counts as finished when its sidecar
names the same fingerprint (split, encoder weights, normalisation, the chunk's volumes) and both files have the
recorded sizes, so a rerun after a kill recomputes only unfinished chunks.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np

from neurovfm.utils.atomic import atomic_open, write_text
from neurovfm.utils.jsonlines import dumps_listed

FORMAT = "neurovfm-features"
VERSION = 1
DTYPE = np.float16
COORDS_DTYPE = np.int16
INDEX_NAME = "index.json"


class FeatureStoreError(ValueError):
    """A feature folder that is missing, of another format or inconsistent."""


def chunk_file(i: int) -> str:
    return f"chunk-{i:05d}.bin"


def coords_file(i: int) -> str:
    return f"chunk-{i:05d}.coords.bin"


def sidecar_file(i: int) -> str:
    return f"chunk-{i:05d}.json"


def dumps(obj: dict, list_key: str = "entries") -> str:
    """JSON with header keys one per line and one ``list_key`` item per line."""
    return dumps_listed(obj, list_key)


class ChunkWriter:
    """Streams one chunk's entries into temporary files; :meth:`close` publishes them, then the sidecar.

    Use as a context manager: on an exception nothing is published (the temporaries are removed)."""

    def __init__(self, folder: str | Path, chunk: int, dim: int, fingerprint: str):
        self.folder, self.chunk, self.dim, self.fingerprint = Path(folder), int(chunk), int(dim), fingerprint
        self.entries: list[dict] = []
        self.n_tokens = 0
        self._stack = contextlib.ExitStack()

    def __enter__(self):
        self._feat = self._stack.enter_context(atomic_open(self.folder / chunk_file(self.chunk), "wb"))
        self._coord = self._stack.enter_context(atomic_open(self.folder / coords_file(self.chunk), "wb"))
        return self

    def add(self, meta: dict, features: np.ndarray, coords: np.ndarray) -> dict:
        features = np.ascontiguousarray(features, dtype=DTYPE)
        coords = np.ascontiguousarray(coords)
        n = features.shape[0]
        if features.shape != (n, self.dim) or coords.shape != (n, 3):
            raise ValueError(f"features {features.shape} / coords {coords.shape} do not fit [n, {self.dim}] / [n, 3]")
        if n and (coords.min() < 0 or coords.max() > np.iinfo(COORDS_DTYPE).max):
            raise ValueError("token coordinates do not fit int16")
        entry = {
            **meta,
            "n_tokens": int(n),
            "chunk": self.chunk,
            "offset": self.n_tokens * self.dim * np.dtype(DTYPE).itemsize,
            "coords_offset": self.n_tokens * 3 * np.dtype(COORDS_DTYPE).itemsize,
        }
        self._feat.write(features.tobytes())
        self._coord.write(coords.astype(COORDS_DTYPE).tobytes())
        self.n_tokens += n
        self.entries.append(entry)
        return entry

    def __exit__(self, exc_type, exc, tb):
        self._stack.__exit__(exc_type, exc, tb)  # renames both files only without an exception
        if exc_type is None:
            write_text(self.folder / sidecar_file(self.chunk), dumps(self.sidecar()))
        return False

    def sidecar(self) -> dict:
        return {
            "chunk": self.chunk,
            "file": chunk_file(self.chunk),
            "coords_file": coords_file(self.chunk),
            "n_tokens": self.n_tokens,
            "nbytes": self.n_tokens * self.dim * np.dtype(DTYPE).itemsize,
            "coords_nbytes": self.n_tokens * 3 * np.dtype(COORDS_DTYPE).itemsize,
            "fingerprint": self.fingerprint,
            "entries": self.entries,
        }


def finished(folder: str | Path, chunk: int, fingerprint: str) -> dict | None:
    """The sidecar of a finished chunk with this fingerprint, else None."""
    folder = Path(folder)
    side, feat, coord = (folder / f(chunk) for f in (sidecar_file, chunk_file, coords_file))
    if not (side.is_file() and feat.is_file() and coord.is_file()):
        return None
    try:
        content = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if (
        content.get("fingerprint") != fingerprint
        or feat.stat().st_size != content.get("nbytes")
        or coord.stat().st_size != content.get("coords_nbytes")
    ):
        return None
    return content


def remove_stale(folder: str | Path, n_chunks: int) -> None:
    """Delete chunk files numbered ``n_chunks`` or above (left by an earlier run with more chunks)."""
    for p in Path(folder).glob("chunk-*"):
        try:
            num = int(p.name.split(".")[0].split("-")[1])
        except (IndexError, ValueError):
            continue
        if num >= n_chunks:
            p.unlink()


def write_index(folder: str | Path, header: dict, sidecars: list[dict]) -> dict:
    chunks, entries = [], []
    for s in sidecars:
        chunks.append({k: s[k] for k in ("file", "coords_file", "n_tokens", "nbytes", "coords_nbytes", "fingerprint")})
        entries.extend(s["entries"])
    index = {
        "format": FORMAT,
        "version": VERSION,
        **header,
        "dtype": np.dtype(DTYPE).name,
        "coords_dtype": np.dtype(COORDS_DTYPE).name,
        "coords_axes": ["slice", "row", "col"],
        "chunks": chunks,
        "entries": entries,
    }
    write_text(Path(folder) / INDEX_NAME, dumps(index))
    return index


def load_index(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FeatureStoreError(f"no feature index at {path}: the split was never extracted completely")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise FeatureStoreError(f"{path}: not a {FORMAT} v{VERSION} index")
    return index


class FeatureReader:
    """Lazy access to one split's features: opening parses ``index.json`` only; a chunk's files are mapped
    (read-only, after a size check) the first time one of its entries is read."""

    def __init__(self, index_path: str | Path):
        self.index_path = Path(index_path)
        if self.index_path.is_dir():
            self.index_path = self.index_path / INDEX_NAME
        self.root = self.index_path.parent
        self.index = load_index(self.index_path)
        self.entries: list[dict] = self.index["entries"]
        self.dim = int(self.index["dim"])
        self._maps: dict[int, tuple[np.memmap, np.memmap]] = {}
        self._by_study: dict[str, list[int]] = {}
        for i, e in enumerate(self.entries):
            self._by_study.setdefault(e["study_id"], []).append(i)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def study_ids(self) -> list[str]:
        return list(self._by_study)

    def _chunk(self, c: int) -> tuple[np.memmap, np.memmap]:
        maps = self._maps.get(c)
        if maps is None:
            info = self.index["chunks"][c]
            paths = (self.root / info["file"], self.root / info["coords_file"])
            for p, n in zip(paths, (info["nbytes"], info["coords_nbytes"])):
                if not p.is_file() or p.stat().st_size != n:
                    raise FeatureStoreError(f"feature chunk {p} is missing or not the size the index records")
            maps = tuple(
                np.memmap(p, dtype=np.uint8, mode="r") if n else np.zeros(0, np.uint8)
                for p, n in zip(paths, (info["nbytes"], info["coords_nbytes"]))
            )
            self._maps[c] = maps
        return maps

    def features(self, i: int) -> np.ndarray:
        """float16 [n_tokens, dim] of entry ``i`` (a read-only view)."""
        e = self.entries[i]
        nbytes = e["n_tokens"] * self.dim * np.dtype(DTYPE).itemsize
        raw = self._chunk(e["chunk"])[0][e["offset"] : e["offset"] + nbytes]
        return raw.view(DTYPE).reshape(e["n_tokens"], self.dim)

    def coords(self, i: int) -> np.ndarray:
        """int16 [n_tokens, 3] token coordinates (slice, row, col) of entry ``i`` (a read-only view)."""
        e = self.entries[i]
        nbytes = e["n_tokens"] * 3 * np.dtype(COORDS_DTYPE).itemsize
        raw = self._chunk(e["chunk"])[1][e["coords_offset"] : e["coords_offset"] + nbytes]
        return raw.view(COORDS_DTYPE).reshape(e["n_tokens"], 3)

    def study_entries(self, study_id: str) -> list[int]:
        return list(self._by_study.get(study_id, []))

    def study(self, study_id: str) -> list[dict]:
        """Every entry of one study: dicts of the index entry plus ``features`` and ``coords`` views."""
        if study_id not in self._by_study:
            raise KeyError(f"study {study_id!r} is not in {self.index_path}")
        return [
            {**self.entries[i], "features": self.features(i), "coords": self.coords(i)}
            for i in self._by_study[study_id]
        ]

    def close(self) -> None:
        self._maps.clear()
