"""An in-memory stand-in for :class:`~neurovfm.store.dataset.VolumeDataset` (same item keys and
``volumes`` entries): ellipsoidal "heads" with a shell, an inner blob and noise, foreground = the head's
tokens. For tests and the throughput benchmark, which must not depend on a built store."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class ToyVolumes(Dataset):
    def __init__(
        self,
        n: int = 8,
        grid=(6, 8, 8),
        patch=(4, 16, 16),
        seed: int = 0,
        ct_every: int = 2,
        volumes_per_study: int = 1,
        nan_at: int | None = None,
    ):
        self.grid, self.patch, self.seed = tuple(grid), tuple(patch), int(seed)
        self.nan_at = nan_at
        self.epoch = 0
        self.volumes = []
        for i in range(n):
            mask = self._token_mask(i)
            self.volumes.append(
                {
                    "series_id": f"toy{i:05d}",
                    "study_id": f"study{i // volumes_per_study:05d}",
                    "modality": "CT" if i % ct_every == ct_every - 1 else "MR",
                    "shape": [g * p for g, p in zip(self.grid, self.patch)],
                    "mask": {"shape": list(self.grid), "n_foreground": int(mask.sum())},
                }
            )

        self._source = list(range(n))  # the generated volume behind each position (restrict keeps them)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def restrict(self, keep: list[int]) -> None:
        """Keep only the volumes at positions ``keep`` (a pretraining data subset, as VolumeDataset.restrict)."""
        self.volumes = [self.volumes[int(i)] for i in keep]
        self._source = [self._source[int(i)] for i in keep]

    def __len__(self) -> int:
        return len(self.volumes)

    def _head(self, i: int, shape) -> np.ndarray:
        """Signed ellipsoid distance (< 1 inside) on a grid of ``shape``, per-volume size and centre."""
        rng = np.random.default_rng([self.seed, i])
        radii = rng.uniform(0.6, 0.85, size=3) * np.asarray(shape) / 2
        centre = np.asarray(shape) / 2 + rng.uniform(-0.05, 0.05, size=3) * np.asarray(shape)
        axes = np.meshgrid(*[np.arange(n) + 0.5 for n in shape], indexing="ij")
        return np.sqrt(sum(((a - c) / r) ** 2 for a, c, r in zip(axes, centre, radii)))

    def _token_mask(self, i: int) -> np.ndarray:
        return self._head(i, self.grid) < 1.0

    def __getitem__(self, i: int) -> dict:
        v = self.volumes[i]
        src = self._source[i]
        shape = v["shape"]
        r = self._head(src, shape)
        rng = np.random.default_rng([self.seed, src, self.epoch])
        image = np.where(r < 1.0, 1.0, -1.0) + np.where((r > 0.85) & (r < 1.0), 1.5, 0.0)
        image += np.where(r < 0.35, 0.8 * np.cos(np.arange(shape[2]) / 6.0)[None, None, :], 0.0)
        image = (image + 0.1 * rng.standard_normal(shape)).astype(np.float32)[None]
        if self.nan_at is not None and src == self.nan_at:
            image[:] = np.nan
        return {
            "image": torch.from_numpy(image),
            "token_mask": torch.from_numpy(self._token_mask(src)),
            "channels": ["toy"],
            "modality": v["modality"],
            "series_id": v["series_id"],
            "study_id": v["study_id"],
            "index": i,
        }
