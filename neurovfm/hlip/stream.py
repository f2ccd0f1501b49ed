"""A resumable, endless stream of study batches balanced between CT and MRI (the paper's HLIP: "training
minibatches were balanced across MRI and CT studies").

Every global batch holds ``batch_studies / 2`` CT studies and as many MRI studies, each with the volumes of the
study (at most ``max_volumes``, a random subset when it has more). Per modality, the pool of training studies
that have a text is cut into whole batches along a permutation drawn per cycle; a cycle drops the remainder of
the division (other studies each cycle), so a study never appears twice in one batch and the smaller modality is
oversampled. Batch ``b`` is a function of (seed, b) alone, so the stream's state is the next batch number: a
resumed run sees the batches an uninterrupted run would have seen. Under DDP each process takes its contiguous
share of each modality's half.

Keys are ``(b, j, dataset_index)`` for the j-th volume of batch b: :class:`neurovfm.jepa.stream.EpochItems`
passes b to the dataset as its epoch (the CT-window draw) and the collator seeds its crops with (b, j).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from neurovfm.jepa.stream import eligible

log = logging.getLogger("neurovfm")

MODALITIES = ("CT", "MR")


class BalancedStudyStream(Sampler[list]):
    def __init__(
        self,
        volumes: list[dict],
        studies: set[str],
        batch_studies: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        max_volumes: int = 8,
        min_foreground: int = 2,
        start: tuple[int, int] = (0, 0),
    ):
        if batch_studies % (2 * world_size):
            raise ValueError(
                f"batch_studies {batch_studies} must split into equal CT and MRI halves over {world_size} processes"
            )
        self.groups: dict[str, list[int]] = defaultdict(list)
        modality = {}
        for i in eligible(volumes, min_foreground):
            sid = volumes[i]["study_id"]
            if sid in studies:
                self.groups[sid].append(i)
                modality[sid] = volumes[i]["modality"]
        self.pools = {m: sorted(s for s in self.groups if modality[s] == m) for m in MODALITIES}
        self.half = batch_studies // 2
        self.local = self.half // world_size
        for m, pool in self.pools.items():
            if len(pool) < self.half:
                raise ValueError(
                    f"{len(pool)} {m} training studies with a text, fewer than the {self.half} of each batch"
                )
        log.info(
            "HLIP pairs: %d CT and %d MRI training studies with a text, %d of each per batch",
            len(self.pools["CT"]),
            len(self.pools["MR"]),
            self.half,
        )
        self.seed, self.rank = int(seed), int(rank)
        self.max_volumes = int(max_volumes)
        self.start = int(start[0])

    def global_studies(self, b: int, modality: str) -> list[str]:
        """The ``modality`` half of global batch ``b``."""
        pool = self.pools[modality]
        per_cycle = len(pool) // self.half
        cycle, slot = divmod(int(b), per_cycle)
        order = np.random.default_rng([self.seed, MODALITIES.index(modality), cycle]).permutation(len(pool))
        return [pool[k] for k in order[slot * self.half : (slot + 1) * self.half]]

    def local_studies(self, b: int) -> list[str]:
        """This process's studies of batch ``b``: its CT share, then its MRI share."""
        lo = self.rank * self.local
        return [s for m in MODALITIES for s in self.global_studies(b, m)[lo : lo + self.local]]

    def volumes_of(self, b: int, j: int, study: str) -> list[int]:
        """The study's volumes in index order, a random ``max_volumes`` of them when it has more."""
        vols = self.groups[study]
        if len(vols) <= self.max_volumes:
            return vols
        rng = np.random.default_rng([self.seed, self.rank, int(b), j, 1])
        return [vols[k] for k in sorted(rng.choice(len(vols), self.max_volumes, replace=False))]

    def batch(self, b: int) -> list[tuple[int, int, int]]:
        keys = []
        for j, study in enumerate(self.local_studies(b)):
            for i in self.volumes_of(b, j, study):
                keys.append((int(b), len(keys), i))
        return keys

    def __iter__(self) -> Iterator[list]:
        b = self.start
        while True:
            yield self.batch(b)
            b += 1
