"""Lazy, zero-copy access to a split's shards.

Opening a reader parses ``index.json`` only; a shard file is opened (``numpy.memmap``, read-only) the
first time one of its volumes is accessed, after checking its size against the index. 8-bit channels and
token masks are views into the mapping (no copy); 4-bit channels are unpacked on access into a new
array on the 8-bit scale (``level * 17``), or as raw levels 0..15 with ``scaled=False``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neurovfm.preprocess.quantize import unpack_nibble
from neurovfm.store.index import StoreIndexError, load_index


class ShardReader:
    def __init__(self, index_path: str | Path):
        self.index_path = Path(index_path)
        self.root = self.index_path.parent
        self.index = load_index(self.index_path)
        self.volumes: list[dict] = self.index["volumes"]
        self.layouts: dict = self.index["layouts"]
        self._maps: dict[int, np.memmap] = {}
        self._by_series = {v["series_id"]: i for i, v in enumerate(self.volumes)}

    def __len__(self) -> int:
        return len(self.volumes)

    def __getstate__(self):  # DataLoader workers re-open their own mappings
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state

    def restrict(self, keep: list[int]) -> None:
        """Keep only the volumes at positions ``keep`` (in that order): volume ``i`` is then ``keep[i]`` of before.
        Shards stay as they are; a pretraining data subset (:mod:`neurovfm.jepa.subset`) reads through this."""
        n = len(self.volumes)
        if any(not 0 <= int(i) < n for i in keep) or len(set(keep)) != len(keep):
            raise ValueError(f"restrict: positions must be distinct and lie in [0, {n})")
        self.volumes = [self.volumes[int(i)] for i in keep]
        self._by_series = {v["series_id"]: i for i, v in enumerate(self.volumes)}

    def position(self, series_id: str) -> int:
        return self._by_series[series_id]

    def _shard(self, s: int) -> np.memmap:
        mm = self._maps.get(s)
        if mm is None:
            info = self.index["shards"][s]
            path = self.root / info["file"]
            if not path.is_file() or path.stat().st_size != info["nbytes"]:
                raise StoreIndexError(f"shard {path} is missing or not the size the index records")
            mm = np.memmap(path, dtype=np.uint8, mode="r")
            self._maps[s] = mm
        return mm

    def record(self, i: int) -> np.ndarray:
        """The raw bytes of volume ``i`` (a view)."""
        v = self.volumes[i]
        return self._shard(v["shard"])[v["offset"] : v["offset"] + v["nbytes"]]

    def plane(self, i: int, p: int) -> np.ndarray:
        v = self.volumes[i]
        n = int(np.prod(v["shape"]))
        return self.record(i)[p * n : (p + 1) * n].reshape(v["shape"])

    def layout(self, i: int) -> list[dict]:
        """Channel descriptions (name, bits, plane, nibble, window) of volume ``i``."""
        return self.layouts[self.volumes[i]["modality"]]["channels"]

    def channels(self, i: int) -> list[str]:
        return [c["name"] for c in self.layout(i)]

    def channel(self, i: int, name: str, scaled: bool = True) -> np.ndarray:
        """uint8 (slice, row, col) of one channel: a view for 8-bit channels, unpacked for 4-bit ones."""
        for c in self.layout(i):
            if c["name"] == name:
                plane = self.plane(i, c["plane"])
                if c["nibble"] is None:
                    return plane
                return unpack_nibble(plane, high=c["nibble"] == "high", scale_to_byte=scaled)
        raise KeyError(f"volume {i} has no channel {name!r}; it has {self.channels(i)}")

    def token_mask(self, i: int) -> np.ndarray:
        """bool (slice, row, col) token grid, a view."""
        v = self.volumes[i]
        m = v["mask"]
        n = int(np.prod(m["shape"]))
        return self.record(i)[m["offset"] : m["offset"] + n].view(np.bool_).reshape(m["shape"])

    def close(self) -> None:
        self._maps.clear()
