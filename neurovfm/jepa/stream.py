"""A resumable, endless stream of pretraining batches for one process.

Epoch orders come from :class:`~neurovfm.store.sampler.StudySampler` (studies shuffled per epoch, this
rank's share of them, the volumes of a study together); the stream walks them epoch after epoch and cuts
consecutive batches, a batch running on into the next epoch rather than dropping a remainder. Its state is
just ``(epoch, offset)``: where the next batch starts. Each batch's items carry their own (epoch, offset),
which seed the collator's random choices and the dataset's CT-window draw, so a run resumed from a saved
position sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from torch.utils.data import Dataset, Sampler

from neurovfm.store.sampler import StudySampler

log = logging.getLogger("neurovfm")


def eligible(volumes: list[dict], min_foreground: int) -> list[int]:
    """Volumes with enough foreground tokens to split into a context and a target."""
    return [i for i, v in enumerate(volumes) if int(v["mask"]["n_foreground"]) >= min_foreground]


class BatchStream(Sampler[list]):
    """Yields lists of ``(epoch, offset, dataset_index)`` keys, ``batch_size`` at a time, forever."""

    def __init__(
        self,
        volumes: list[dict],
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        ct_fraction: float | None = None,
        min_foreground: int = 2,
        start: tuple[int, int] = (0, 0),
    ):
        self.keep = eligible(volumes, min_foreground)
        if not self.keep:
            raise ValueError(f"no volume has {min_foreground} or more foreground tokens to train on")
        if len(self.keep) < len(volumes):
            log.info(
                "pretraining skips %d of %d volumes with fewer than %d foreground tokens",
                len(volumes) - len(self.keep),
                len(volumes),
                min_foreground,
            )
        self.sampler = StudySampler(
            [volumes[i] for i in self.keep],
            shuffle=True,
            ct_fraction=ct_fraction,
            seed=seed,
            rank=rank,
            world_size=world_size,
        )
        self.batch_size = int(batch_size)
        self.start = (int(start[0]), int(start[1]))

    def epoch_order(self, epoch: int) -> list[int]:
        self.sampler.set_epoch(epoch)
        order = [self.keep[i] for i in self.sampler]
        if not order:
            raise ValueError("this process's share of an epoch is empty: more processes than studies")
        return order

    def __iter__(self) -> Iterator[list]:
        epoch, offset = self.start
        order = self.epoch_order(epoch)
        while True:
            batch = []
            while len(batch) < self.batch_size:
                if offset >= len(order):
                    epoch, offset = epoch + 1, 0
                    order = self.epoch_order(epoch)
                batch.append((epoch, offset, order[offset]))
                offset += 1
            yield batch


class EpochItems(Dataset):
    """Wrap a dataset so items are fetched by ``(epoch, offset, index)`` keys: sets the dataset's epoch (its
    CT-window draw depends on it) and records the key in the item for the collator."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key) -> dict:
        epoch, offset, index = key
        self.dataset.set_epoch(epoch)
        item = dict(self.dataset[index])
        item.update(epoch=epoch, offset=offset, index=index)
        return item
