"""From the training shards to DINOv2 batches.

The volumes come from the shared pretraining stream (:class:`neurovfm.jepa.stream.BatchStream`: the train split's
index only, studies shuffled per epoch, this process's share, ``pretrain.batch_size`` volumes per step, resumable
by its (epoch, offset) position). :class:`SliceItems` turns each volume key into ``slices_per_volume`` slices:

- the *foreground* slices only: those whose slab of the token grid holds a foreground token (the rule of the
  slice-wise feature extractor, :func:`neurovfm.features.public2d.slices.slice_indices`), drawn at random;
- one channel of the volume: MRI its single one, CT one window drawn with ``pretrain.ct_window_probs`` (brain 0.7,
  blood 0.15, bone 0.15 in the demo), each window a grey image of its own as the feature extractor treats them;
- read straight from the shard as uint8 (only the drawn slices are read, not the volume).

:class:`DinoCollator` cuts every slice into its multi-crop (:mod:`.crops`) and draws the iBOT masks of the batch's
global crops (:mod:`.masking`). Every random choice comes from generators seeded by (seed, rank, epoch, offset), so
a batch is the same whichever loader worker builds it and after a resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from neurovfm.dinov2.crops import CropSpec, multi_crop
from neurovfm.dinov2.masking import ibot_masks
from neurovfm.features.public2d.slices import slice_indices


class SliceItems(Dataset):
    """Items by ``(epoch, offset, index)`` keys of the pretraining stream: slices of volume ``index``."""

    def __init__(self, dataset, seed: int, rank: int, ct_window_probs: dict, slices_per_volume: int):
        self.reader = dataset.reader  # a VolumeDataset of the train split's shards
        self.seed, self.rank = int(seed), int(rank)
        self.probs = dict(ct_window_probs)
        self.k = int(slices_per_volume)

    def __len__(self) -> int:
        return len(self.reader)

    def window(self, i: int, rng: np.random.Generator) -> str:
        names = self.reader.channels(i)
        if self.reader.volumes[i]["modality"] != "CT":
            return names[0]
        keys = [k for k in self.probs if k in names]
        if not keys:
            raise ValueError(f"pretrain.ct_window_probs {sorted(self.probs)} names none of the CT windows {names}")
        p = np.asarray([self.probs[k] for k in keys], dtype=float)
        return keys[int(rng.choice(len(keys), p=p / p.sum()))]

    def __getitem__(self, key) -> dict:
        epoch, offset, i = (int(k) for k in key)
        rng = np.random.default_rng([self.seed, self.rank, epoch, offset, 2])
        v = self.reader.volumes[i]
        mask = np.asarray(self.reader.token_mask(i))
        slab = int(self.reader.index["patch"][0])
        fg = slice_indices(int(v["shape"][0]), mask, slab, 1, None)
        if fg.size == 0:
            raise ValueError(f"volume {v['series_id']} has no foreground slice")
        idx = np.sort(rng.choice(fg, self.k, replace=fg.size < self.k))
        name = self.window(i, rng)
        return {
            "slices": np.asarray(self.reader.channel(i, name))[idx],
            "slice_index": idx,
            "inplane": mask[np.minimum(idx // slab, mask.shape[0] - 1)],
            "modality": v["modality"],
            "window": name,
            "series_id": v["series_id"],
            "epoch": epoch,
            "offset": offset,
            "index": i,
        }


@dataclass
class DinoBatch:
    global_crops: torch.Tensor  # [2 B, 3, S, S], crop-major: the first crop of every image, then the second
    local_crops: torch.Tensor  # [n_local B, 3, s, s], crop-major
    masks: torch.Tensor  # [2 B, patches] bool, iBOT masks of the global crops (student side)
    modality: list[str]  # per global crop
    mode: np.ndarray  # per global crop: 1 masked, 0 not
    n_foreground: np.ndarray  # per global crop: its patches
    n_context: np.ndarray  # per global crop: its unmasked patches
    n_images: int = 0  # B, slice images
    n_volumes: int = 0
    position: tuple = (0, 0)
    keys: list = field(default_factory=list)
    slices: list = field(default_factory=list)  # per image: (series_id, slice index, window)
    boxes: list = field(default_factory=list)  # per image: crop boxes and anchors (tests, figures)

    def to(self, device) -> DinoBatch:
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return DinoBatch(**moved)

    def pin_memory(self) -> DinoBatch:
        return DinoBatch(
            **{k: (v.pin_memory() if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        )


class DinoCollator:
    """``collate_fn`` of the DINOv2 loader (picklable for worker processes)."""

    def __init__(self, spec: CropSpec, ibot: dict, patch_2d: int, inplane_patch, seed: int, rank: int = 0):
        self.spec = spec
        self.mask_probability = float(ibot["mask_probability"])
        self.mask_ratio = tuple(float(r) for r in ibot["mask_ratio"])
        self.side = spec.image_size // int(patch_2d)
        self.inplane_patch = tuple(int(p) for p in inplane_patch)
        self.seed, self.rank = int(seed), int(rank)

    def __call__(self, items: list[dict]) -> DinoBatch:
        globals_, locals_, modality, slices, boxes = [], [], [], [], []
        for it in items:
            for k in range(len(it["slice_index"])):
                rng = np.random.default_rng([self.seed, self.rank, it["epoch"], it["offset"], k, 3])
                crop = multi_crop(it["slices"][k], it["inplane"][k], self.inplane_patch, self.spec, rng)
                globals_.append(crop["global"])
                locals_.append(crop["local"])
                modality.append(it["modality"])
                slices.append((it["series_id"], int(it["slice_index"][k]), it["window"]))
                boxes.append({"boxes": crop["boxes"], "anchors": crop["anchors"], "side": crop["side"]})
        n = len(globals_)
        first = items[0]
        rng = np.random.default_rng([self.seed, self.rank, first["epoch"], first["offset"], 4])
        masks = torch.from_numpy(ibot_masks(2 * n, self.side, self.mask_probability, self.mask_ratio, rng))
        n_patches = self.side * self.side
        last = items[-1]
        return DinoBatch(
            global_crops=torch.stack(globals_, dim=1).flatten(0, 1),
            local_crops=torch.stack(locals_, dim=1).flatten(0, 1),
            masks=masks,
            modality=modality * 2,
            mode=masks.any(dim=1).numpy().astype(np.int64),
            n_foreground=np.full(2 * n, n_patches),
            n_context=(n_patches - masks.sum(dim=1)).numpy(),
            n_images=n,
            n_volumes=len(items),
            position=(int(last["epoch"]), int(last["offset"]) + 1),
            keys=[(it["epoch"], it["index"]) for it in items],
            slices=slices,
            boxes=boxes,
        )
