"""A torch ``Dataset`` over one split's index.

Each item: ``image`` float32 tensor (C, slice, row, col) with C the chosen channels, scaled to
``voxel / 255`` and, when statistics are given, z-scored per modality/channel; ``token_mask`` bool
tensor over the token grid; ``channels`` (names); and the volume's ids and modality. CT channels are
either all of them, a fixed subset, or one drawn per item with ``ct_window_probs`` (e.g. brain 0.7,
blood 0.15, bone 0.15 for pretraining), from a generator seeded by (seed, epoch, item) so a run
repeats exactly whatever the number of loader workers.

With ``lazy=True`` the item's ``image`` is a :class:`LazyVolume` instead: the stored uint8 channels, scaled and
z-scored only for the tokens a caller reads (``LazyVolume.tokens``), with the same float32 operations, so the values
are bit-identical to the eager image's. For a collator that keeps a few tokens of each volume (HLIP's token
dropping) this skips the conversion of every other voxel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from neurovfm.models.patch_embed import gather_tokens
from neurovfm.store.reader import ShardReader
from neurovfm.store.stats import load_stats


def normalise(raw: np.ndarray, out: np.ndarray, norm: tuple | None) -> np.ndarray:
    """``out`` = raw uint8 / 255, then ``(x - mean) / std`` when ``norm`` = (mean, std): float32 throughout, the one
    definition of an item's voxel values (eager image and lazy tokens alike)."""
    np.multiply(raw, np.float32(1.0 / 255.0), out=out)
    if norm is not None:
        out -= np.float32(norm[0])
        out /= np.float32(norm[1])
    return out


class LazyVolume:
    """One volume's chosen channels as stored (uint8 arrays, slice x row x col) with their normalisation; values
    are computed only for what is read."""

    def __init__(self, planes: list[np.ndarray], norms: list[tuple | None]):
        if not planes or len(planes) != len(norms):
            raise ValueError("a lazy volume needs one normalisation per channel and at least one channel")
        self.planes, self.norms = planes, norms

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.planes), *self.planes[0].shape)

    def blocks(self, coords: np.ndarray, patch) -> np.ndarray:
        """float32 [K, C, pz, py, px]: the voxel blocks of the tokens at grid positions ``coords`` [K, 3]."""
        raw = np.stack([gather_tokens(p, coords, patch) for p in self.planes], axis=1)  # [K, C, pz, py, px]
        out = np.empty(raw.shape, dtype=np.float32)
        for c, norm in enumerate(self.norms):
            normalise(raw[:, c], out[:, c], norm)
        return out

    def tokens(self, coords: np.ndarray, patch) -> torch.Tensor:
        """float32 [K, C*pz*py*px] patches of the tokens at grid positions ``coords`` [K, 3] (rows flattened as
        (c, dz, dy, dx), as :func:`neurovfm.models.patch_embed.patchify`)."""
        out = self.blocks(coords, patch)
        return torch.from_numpy(out.reshape(len(out), int(np.prod(out.shape[1:]))))

    def full(self) -> torch.Tensor:
        """The whole image [C, Z, Y, X], as the eager dataset returns it."""
        out = np.empty(self.shape, dtype=np.float32)
        for c, (plane, norm) in enumerate(zip(self.planes, self.norms)):
            normalise(plane, out[c], norm)
        return torch.from_numpy(out)


class VolumeDataset(Dataset):
    def __init__(
        self,
        index_path: str | Path,
        stats: dict | str | Path | None = None,
        ct_channels: list[str] | None = None,
        ct_window_probs: dict[str, float] | None = None,
        seed: int = 0,
        lazy: bool = False,
    ):
        self.reader = ShardReader(index_path)
        self.lazy = bool(lazy)
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

    def _norm(self, modality: str, name: str) -> tuple | None:
        if self.stats is None:
            return None
        s = self.stats[modality][name]
        return (s["mean"], s["std"])

    def __getitem__(self, i: int) -> dict:
        entry = self.reader.volumes[i]
        names = self._choose(i, entry)
        planes = [self.reader.channel(i, name) for name in names]
        norms = [self._norm(entry["modality"], name) for name in names]
        volume = LazyVolume(planes, norms)
        return {
            "image": volume if self.lazy else volume.full(),
            "token_mask": torch.from_numpy(np.array(self.reader.token_mask(i))),
            "channels": names,
            "modality": entry["modality"],
            "series_id": entry["series_id"],
            "study_id": entry["study_id"],
            "index": i,
        }
