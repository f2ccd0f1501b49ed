"""The shard index: one JSON file per split, written last, naming every volume's bytes.

Layout of one record (``volume`` entry) inside its shard, from ``offset`` (a multiple of ``ALIGN``):
``planes`` uint8 planes of ``prod(shape)`` bytes each, C order (slice, row, col); then the token mask,
one byte (0/1) per token, C order over ``mask.shape = shape / patch``. Which channel lives in which
plane (and nibble) is listed in ``channels``; 4-bit channels are read back as ``level * 17``.

Index keys: ``format``, ``version``, ``split``, ``axis_order``, ``spacing_mm``, ``patch``, ``align``,
``layouts`` (per modality: number of planes and the channels: name, bits, plane, nibble, CT window),
``shards`` (file, nbytes, n_volumes, fingerprint) and ``volumes`` (one dict per volume: ``series_id``,
``study_id``, ``patient_id`` (keyed hashes from ingest), ``modality``, ``sequence``, ``orientation``,
``split``, ``shard``, ``offset``, ``nbytes``, ``shape``, ``mask`` (offset relative to the record, token
grid shape, n_foreground), ``direction_lps`` (3 x 3, columns = array axes (slice, row, col)),
``origin_lps`` (centre of voxel [0, 0, 0]), ``fit`` (crop/pad, full shape, voxels removed (+) or
added (-)), ``obliquity_deg``, ``intensity`` (MRI percentile bounds in raw units) and foreground
``moments`` per channel [count, sum of levels, sum of squared levels], levels on the 8-bit scale).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from neurovfm.utils.atomic import write_text
from neurovfm.utils.jsonlines import dumps_listed

FORMAT = "neurovfm-shards"
VERSION = 1
ALIGN = 4096  # record start alignment in bytes (page size): a record never shares a page with another
AXIS_ORDER = ["slice", "row", "col"]
INDEX_NAME = "index.json"


class StoreIndexError(ValueError):
    """An index file that is missing, of another format or internally inconsistent."""


def shard_file(i: int) -> str:
    return f"shard-{i:05d}.bin"


def sidecar_file(i: int) -> str:
    return f"shard-{i:05d}.json"


def aligned(n: int) -> int:
    return -(-int(n) // ALIGN) * ALIGN


def token_shape(shape, patch) -> tuple[int, int, int]:
    return tuple(int(s) // int(p) for s, p in zip(shape, patch))


def record_nbytes(shape, patch, planes: int) -> int:
    return planes * int(np.prod(shape)) + int(np.prod(token_shape(shape, patch)))


def mask_offset(shape, planes: int) -> int:
    return planes * int(np.prod(shape))


def fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def dumps(obj) -> str:
    """JSON with the header keys one per line and, when present, one ``volumes`` entry per line."""
    return dumps_listed(obj, "volumes")


def write_index(path: str | Path, index: dict) -> None:
    write_text(path, dumps(index))


def load_index(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise StoreIndexError(f"no index at {path}: the split was never written completely")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise StoreIndexError(f"{path}: not a {FORMAT} v{VERSION} index")
    for v in index["volumes"]:
        if not 0 <= v["shard"] < len(index["shards"]):
            raise StoreIndexError(f"{path}: volume {v['series_id']} names shard {v['shard']} outside the index")
        if v["offset"] + v["nbytes"] > index["shards"][v["shard"]]["nbytes"]:
            raise StoreIndexError(f"{path}: volume {v['series_id']} runs past the end of its shard")
    return index
