"""Study -> series token tensors from a feature store, and the text side of each study.

A series is one feature entry: an MRI volume, or a CT volume in one of ``reportgen.ct_windows`` (each
window its own series of latents, as the frontier inputs treat CT windows). Series keep the index's order
and are capped at ``reportgen.max_series``; a series longer than ``max_tokens_per_series`` keeps evenly
strided tokens.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from neurovfm.features.store import FeatureReader
from neurovfm.utils.jsonlines import read_jsonl


def series_entries(reader: FeatureReader, study_id: str, ct_windows, max_series: int) -> list[int]:
    keep = []
    for i in reader.study_entries(study_id):
        e = reader.entries[i]
        if e["n_tokens"] < 1:
            continue
        if e["modality"] == "CT" and e["window"] not in ct_windows:
            continue
        keep.append(i)
    return keep[:max_series]


def series_tokens(reader: FeatureReader, idxs: list[int], max_tokens: int | None) -> list[torch.Tensor]:
    out = []
    for i in idxs:
        f = reader.features(i)
        if max_tokens and f.shape[0] > max_tokens:
            f = f[np.linspace(0, f.shape[0] - 1, max_tokens).round().astype(int)]
        out.append(torch.from_numpy(np.asarray(f, dtype=np.float32)))
    return out


class StudyTokens:
    """Series token tensors of a split's studies, per the ``reportgen`` config."""

    def __init__(self, index_path: str | Path, rg: dict):
        self.reader = FeatureReader(index_path)
        self.ct_windows, self.max_series = list(rg["ct_windows"]), int(rg["max_series"])
        self.max_tokens = rg["max_tokens_per_series"]

    @property
    def dim(self) -> int:
        return self.reader.dim

    def entries(self, study_id: str) -> list[int]:
        return series_entries(self.reader, study_id, self.ct_windows, self.max_series)

    def has(self, study_id: str) -> bool:
        return bool(self.entries(study_id))

    def __call__(self, study_id: str) -> list[torch.Tensor]:
        return series_tokens(self.reader, self.entries(study_id), self.max_tokens)


class ShardStudies:
    """Which studies of a split would have a series of features, read from the preprocessed shards' index
    (before any encoder has run): a study has one when a volume has a foreground token and is an MRI volume or a
    CT volume with one of ``reportgen.ct_windows`` among its channels, the rule of :func:`series_entries` on the
    feature entries that extraction writes (one per volume and channel, ``n_tokens`` its foreground tokens). The
    text-only stage of the demo LM (:mod:`.text_stage`) draws its studies from here; its result is used only
    where the features give the same studies (a fingerprint check), so a difference costs time, not exactness."""

    def __init__(self, shard_index: str | Path, rg: dict):
        from neurovfm.store.reader import ShardReader

        reader = ShardReader(shard_index)
        windows = set(rg["ct_windows"])
        self._with_series = {
            v["study_id"]
            for i, v in enumerate(reader.volumes)
            if int(v["mask"]["n_foreground"]) >= 1 and (v["modality"] != "CT" or windows & set(reader.channels(i)))
        }

    def has(self, study_id: str) -> bool:
        return study_id in self._with_series


def studies_with_series(index_path: str | Path, rg: dict):
    """Which studies have a series (``.has``), from a feature index (:class:`StudyTokens`) or, before any encoder
    ran, from a preprocessed shards' index (:class:`ShardStudies`): the index's ``format`` decides."""
    import json

    from neurovfm.store import index as shard_index

    fmt = json.loads(Path(index_path).read_text()).get("format")
    return ShardStudies(index_path, rg) if fmt == shard_index.FORMAT else StudyTokens(index_path, rg)


def load_findings(path: str | Path) -> dict[str, dict]:
    """{study_id: findings record} of labels/findings.jsonl."""
    return {rec["study_id"]: rec for rec in read_jsonl(path)}


def load_indications(reports_jsonl: str | Path) -> dict[str, str]:
    """{study_id: indication} from the private reports (PHI-bearing: keep in memory, never write under results)."""
    return {rec["study_id"]: (rec.get("indication") or "").strip() for rec in read_jsonl(reports_jsonl)}
