"""A torch ``Dataset`` over one split's index.

Each item: ``image`` float32 tensor (C, slice, row, col) with C the chosen channels, scaled to
``voxel / 255`` and, when statistics are given, z-scored per modality/channel; ``token_mask`` bool
tensor over the token grid; ``channels`` (names); and the volume's ids and modality. CT channels are
either all of them, a fixed subset, or one drawn per item with ``ct_window_probs`` (e.g. brain 0.7,
blood 0.15, bone 0.15 for pretraining), from a generator seeded by (seed, epoch, item) so a run
repeats exactly whatever the number of loader workers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from neurovfm.store.reader import ShardReader
from neurovfm.store.stats import load_stats


class VolumeDataset(Dataset):
    def __init__(
        self,
        index_path: str | Path,
        stats: dict | str | Path | None = None,
        ct_channels: list[str] | None = None,
        ct_window_probs: dict[str, float] | None = None,
        seed: int = 0,
    ):
        self.reader = ShardReader(index_path)
        self.stats = load_stats(stats) if isinstance(stats, (str, Path)) else stats
        if ct_channels is not None and ct_window_probs is not None:
            raise ValueError("give ct_channels or ct_window_probs, not both")
        self.ct_channels = ct_channels
        self.ct_window_probs = ct_window_probs
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.reader)

    @property
    def volumes(self) -> list[dict]:
        return self.reader.volumes

    def restrict(self, keep: list[int]) -> None:
        """Keep only the volumes at positions ``keep`` (see :meth:`ShardReader.restrict`); item ``i`` is then
        ``keep[i]`` of before, and its CT-window draw is seeded by its new position."""
        self.reader.restrict(keep)

    def _choose(self, i: int, entry: dict) -> list[str]:
        names = self.reader.channels(i)
        if entry["modality"] != "CT":
            return names
        if self.ct_channels is not None:
            return list(self.ct_channels)
        if self.ct_window_probs is not None:
            keys = list(self.ct_window_probs)
            p = np.asarray([self.ct_window_probs[k] for k in keys], dtype=float)
            rng = np.random.default_rng([self.seed, self.epoch, i])
            return [keys[int(rng.choice(len(keys), p=p / p.sum()))]]
        return names

    def __getitem__(self, i: int) -> dict:
        entry = self.reader.volumes[i]
        names = self._choose(i, entry)
        image = np.empty((len(names), *entry["shape"]), dtype=np.float32)
        for c, name in enumerate(names):
            np.multiply(self.reader.channel(i, name), np.float32(1.0 / 255.0), out=image[c])
            if self.stats is not None:
                s = self.stats[entry["modality"]][name]
                image[c] -= np.float32(s["mean"])
                image[c] /= np.float32(s["std"])
        return {
            "image": torch.from_numpy(image),
            "token_mask": torch.from_numpy(np.array(self.reader.token_mask(i))),
            "channels": names,
            "modality": entry["modality"],
            "series_id": entry["series_id"],
            "study_id": entry["study_id"],
            "index": i,
        }
