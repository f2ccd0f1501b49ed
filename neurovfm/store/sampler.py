"""Study-aware sampling: the volumes of one study are always yielded together (contiguously), studies
are shuffled per epoch, and the CT/MRI mix can be set.

``ct_fraction=None`` keeps the natural mix (every study once per epoch). A number p draws each of the
epoch's studies from the CT pool with probability p and from the MRI pool otherwise, cycling (and
reshuffling) a pool when it runs out, so the smaller modality is oversampled. ``rank``/``world_size``
give each distributed process every world_size-th study of the same epoch order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class StudySampler(Sampler[int]):
    def __init__(
        self,
        volumes: list[dict],
        shuffle: bool = True,
        ct_fraction: float | None = None,
        studies_per_epoch: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if ct_fraction is not None and not 0.0 <= ct_fraction <= 1.0:
            raise ValueError("ct_fraction must lie in [0, 1]")
        if not 0 <= rank < world_size:
            raise ValueError("rank must lie in [0, world_size)")
        groups: dict[str, list[int]] = defaultdict(list)
        modality: dict[str, str] = {}
        for i, v in enumerate(volumes):
            groups[v["study_id"]].append(i)
            modality[v["study_id"]] = v["modality"]
        self.studies = sorted(groups)
        self.groups = {s: groups[s] for s in self.studies}
        self.pools = {m: [s for s in self.studies if modality[s] == m] for m in ("CT", "MR")}
        self.shuffle, self.ct_fraction = shuffle, ct_fraction
        self.n_epoch = int(studies_per_epoch or len(self.studies))
        self.seed, self.rank, self.world_size, self.epoch = int(seed), rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _order(self, items: list[str], rng: np.random.Generator) -> list[str]:
        return [items[j] for j in rng.permutation(len(items))] if self.shuffle else list(items)

    def epoch_studies(self) -> list[str]:
        """This rank's studies for the current epoch, in order."""
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.ct_fraction is None:
            order = self._order(self.studies, rng)
            order = (order * (-(-self.n_epoch // max(len(order), 1))))[: self.n_epoch]
        else:
            order, queues = [], {m: [] for m in self.pools}
            for _ in range(self.n_epoch):
                want = "CT" if rng.random() < self.ct_fraction else "MR"
                if not self.pools[want]:
                    want = "MR" if want == "CT" else "CT"
                if not queues[want]:
                    queues[want] = self._order(self.pools[want], rng)[::-1]
                order.append(queues[want].pop())
        return order[self.rank :: self.world_size]

    def study_batches(self) -> Iterator[list[int]]:
        """Volume indices grouped per study (for study-level models)."""
        for s in self.epoch_studies():
            yield list(self.groups[s])

    def __iter__(self) -> Iterator[int]:
        for group in self.study_batches():
            yield from group

    def __len__(self) -> int:
        return sum(len(self.groups[s]) for s in self.epoch_studies())
