"""Study bags for the attentive probes: every stored token of every volume (and CT window) of one study.

A :class:`BagSet` pairs the studies of one split and modality in the diagnosis label table with their frozen
features (:class:`neurovfm.features.store.FeatureReader`). Studies are matched on ``study_id``; a labelled study
without any feature entry (every volume excluded upstream) is left out and listed in :attr:`BagSet.missing`, so
the caller can record it, never silently lose it. Bags are read lazily from the memory-mapped store; with
``cache=True`` they are kept in RAM as float32 after the first read (the demo's training split is about 100 MB per
modality; at paper scale leave ``probes.cache_bags`` off and the page cache does the work).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neurovfm.features.store import FeatureReader
from neurovfm.labels.ontology import load_ontology, normalise_modality

LABEL_ID_COLUMNS = ("study_id", "split")


def read_label_table(path: str | Path, modality: str) -> tuple[pd.DataFrame, list[str]]:
    """The diagnosis table ``labels/{ct,mri}.csv``: its rows and the class names, checked against the ontology
    (same names, same order)."""
    df = pd.read_csv(path, dtype={"study_id": str, "split": str})
    names = load_ontology(normalise_modality(modality)).names
    cols = [c for c in df.columns if c not in LABEL_ID_COLUMNS]
    if cols != names:
        missing, extra = sorted(set(names) - set(cols)), sorted(set(cols) - set(names))
        raise ValueError(
            f"{path}: label columns do not match the {modality} ontology "
            f"(missing {missing[:5]}, unexpected {extra[:5]}, or out of order)"
        )
    values = df[names].to_numpy()
    if not np.isin(values, (0, 1)).all():
        raise ValueError(f"{path}: label values must be 0 or 1")
    return df, names


class BagSet:
    """The labelled studies of one split that have features, with lazy packed access to their token bags.

    ``windows``: CT windows whose entries join the bag (MR entries have window ``mri`` and always join).
    """

    def __init__(
        self,
        reader: FeatureReader,
        labels: pd.DataFrame,
        class_names: list[str],
        split: str,
        modality: str,
        windows=("brain", "blood", "bone"),
        cache: bool = False,
    ):
        self.reader, self.split, self.class_names = reader, split, list(class_names)
        self.modality = normalise_modality(modality)
        self.windows = set(windows) | {"mri"}
        rows = labels[labels["split"] == split]
        self.study_ids: list[str] = []
        self.entries: list[list[int]] = []
        self.missing: list[str] = []
        keep = []
        for pos, sid in enumerate(rows["study_id"]):
            ent = [
                i
                for i in reader.study_entries(sid)
                if reader.entries[i]["window"] in self.windows
                and normalise_modality(reader.entries[i]["modality"]) == self.modality
            ]
            ent = [i for i in ent if reader.entries[i]["n_tokens"] > 0]
            if ent:
                self.study_ids.append(sid)
                self.entries.append(ent)
                keep.append(pos)
            else:
                self.missing.append(sid)
        self.labels = rows[self.class_names].to_numpy(dtype=np.float32)[keep]
        self.n_tokens = np.array(
            [sum(reader.entries[i]["n_tokens"] for i in ent) for ent in self.entries], dtype=np.int64
        )
        self._cache: dict[int, np.ndarray] | None = {} if cache else None
        self.checked_on_read = cache  # every bag() result was checked finite (when it entered the cache)

    def __len__(self) -> int:
        return len(self.study_ids)

    @property
    def dim(self) -> int:
        return self.reader.dim

    def bag(self, i: int) -> np.ndarray:
        """[n_tokens, dim] (float16 from the store; float32 when cached): the study's entries in store order."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        parts = [self.reader.features(e) for e in self.entries[i]]
        out = np.concatenate(parts, axis=0) if len(parts) > 1 else np.array(parts[0])
        if self._cache is not None:  # cached as float32: no conversion at every step, checked once
            out = out.astype(np.float32)
            self._check_finite([i], [out])
            self._cache[i] = out
        return out

    def _check_finite(self, idx, bags) -> None:
        if not all(np.isfinite(b).all() for b in bags):
            bad = [self.study_ids[int(i)] for i, b in zip(idx, bags) if not np.isfinite(b).all()]
            raise ValueError(f"non-finite features in studies {bad[:5]} of split {self.split!r}")

    def pack(
        self, idx, max_tokens: int | None = None, rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Packed float32 ``tokens [N, D]`` and int32 ``cu_seqlens [B+1]`` of the studies ``idx``.

        ``max_tokens`` (training only): a bag longer than this is replaced by a random subset of that many of its
        tokens (drawn from ``rng``), which bounds the cost of a step; evaluation always uses whole bags.
        """
        bags = []
        for i in idx:
            b = self.bag(int(i))
            if max_tokens is not None and b.shape[0] > max_tokens:
                if rng is None:
                    raise ValueError("subsampling a bag needs an rng")
                b = b[np.sort(rng.choice(b.shape[0], size=max_tokens, replace=False))]
            bags.append(b)
        lens = np.array([b.shape[0] for b in bags], dtype=np.int64)
        cu = torch.zeros(len(bags) + 1, dtype=torch.int32)
        cu[1:] = torch.from_numpy(np.cumsum(lens)).to(torch.int32)
        if not self.checked_on_read:
            self._check_finite(idx, bags)
        tokens = torch.from_numpy(np.concatenate(bags, axis=0).astype(np.float32, copy=False))
        return tokens, cu

    def token_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension mean and standard deviation over every token of every bag (float64 accumulation)."""
        total, sq, n = np.zeros(self.dim), np.zeros(self.dim), 0
        for i in range(len(self)):
            b = self.bag(i).astype(np.float64)
            total += b.sum(axis=0)
            sq += np.square(b).sum(axis=0)
            n += b.shape[0]
        if n == 0:
            raise ValueError(f"split {self.split!r} has no tokens")
        mean = total / n
        return mean, np.sqrt(np.maximum(sq / n - mean**2, 0.0))

    def entry_meta(self, i: int) -> list[dict]:
        """Index entries (series, window, grid, n_tokens) of study ``i`` in bag order."""
        return [self.reader.entries[e] for e in self.entries[i]]


def load_bagsets(
    feature_dir: str | Path,
    labels: pd.DataFrame,
    class_names: list[str],
    modality: str,
    splits=("train", "val", "test"),
    windows=("brain", "blood", "bone"),
    cache_splits=("train", "val"),
    cache: bool = True,
) -> dict[str, BagSet]:
    """One :class:`BagSet` per split from ``feature_dir/{split}/index.json``."""
    out = {}
    for split in splits:
        reader = FeatureReader(Path(feature_dir) / split / "index.json")
        out[split] = BagSet(
            reader, labels, class_names, split, modality, windows, cache=cache and split in cache_splits
        )
    return out
