"""Turn a list of dataset items into one packed Vol-JEPA batch.

Per item: crop (at most ``max_crop_tokens`` per axis, around foreground), flips and in-plane swap,
patchify, keep the crop's foreground tokens, draw context/target masks. An item whose image is a
:class:`~neurovfm.store.dataset.LazyVolume` (the trainers' datasets) gives the same tokens, bit for bit,
from only the kept tokens' voxels: the crop's token grid is oriented, the source of each kept token
found (:func:`~neurovfm.jepa.augment.source_tokens`) and its block read, normalised and oriented.
Per batch: half the items use each masking configuration. Every random choice comes from generators
seeded by (seed, rank, epoch, position in the epoch), so a batch is the same whichever worker builds it
and after a resume.

The packed batch holds ALL foreground tokens of every item (the teacher's input) and, as indices into
that pack, the context tokens (the student's input) and the target tokens (what is predicted).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from neurovfm.jepa.augment import (
    crop_box,
    draw_orientation,
    orient,
    orient_blocks,
    orient_grid,
    source_tokens,
    voxel_box,
)
from neurovfm.jepa.masking import MODE_NAMES, MaskSpec, balanced_modes, sample_masks, spec_from_config
from neurovfm.models.packing import cu_seqlens_from_lengths
from neurovfm.models.patch_embed import patchify
from neurovfm.store.dataset import LazyVolume


@dataclass
class Sample:
    patches: torch.Tensor  # [n_fg, P] float32, the crop's foreground tokens
    coords: torch.Tensor  # [n_fg, 3] long, token coordinates in the (augmented) crop
    context: torch.Tensor  # [n_fg] bool
    target: torch.Tensor  # [n_fg] bool
    modality: str
    mode: int
    grid: tuple  # token grid of the crop (z, y, x)
    fg_grid: torch.Tensor  # [z, y, x] bool, the crop's foreground (for figures)
    image: torch.Tensor | None  # [C, Z, Y, X] the augmented crop (a reference, for figures); None from a lazy item


@dataclass
class JepaBatch:
    patches: torch.Tensor  # [N, P] all foreground tokens, packed
    coords: torch.Tensor  # [N, 3] long
    cu: torch.Tensor  # [B+1] int32
    max_len: int
    ctx_idx: torch.Tensor  # [Nc] long, rows of the pack that are context
    cu_ctx: torch.Tensor
    max_ctx: int
    tgt_idx: torch.Tensor  # [Nt] long, rows of the pack that are target
    cu_tgt: torch.Tensor
    max_tgt: int
    modality: list[str]
    mode: np.ndarray  # [B] configuration ids
    n_foreground: np.ndarray  # [B]
    n_context: np.ndarray  # [B]
    position: tuple = (0, 0)  # stream position after this batch: (epoch, offset)
    keys: list = field(default_factory=list)

    @property
    def context_fraction(self) -> np.ndarray:
        return self.n_context / self.n_foreground

    def pin_memory(self) -> "JepaBatch":
        """Called by a DataLoader with ``pin_memory=True``: page-locked tensors copy to the GPU asynchronously."""
        return JepaBatch(
            **{k: (v.pin_memory() if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        )

    def to(self, device) -> "JepaBatch":
        moved = {
            k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()
        }
        return JepaBatch(**moved)


class Collator:
    """``collate_fn`` for the pretraining DataLoader (picklable for worker processes)."""

    def __init__(self, pretrain: dict, patch, seed: int, rank: int = 0):
        self.patch = tuple(int(p) for p in patch)
        self.max_crop = tuple(int(m) for m in pretrain["max_crop_tokens"])
        self.specs: dict[str, MaskSpec] = {
            m: spec_from_config(pretrain["masking"], m) for m in pretrain["masking"]["context_ratio"]
        }
        self.flip_p = float(pretrain["augment"]["flip_p"])
        self.swap_p = float(pretrain["augment"]["swap_inplane_p"])
        self.seed, self.rank = int(seed), int(rank)

    def rng(self, epoch: int, offset: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.rank, int(epoch), int(offset), stream])

    def sample(self, item: dict, mode: int, rng: np.random.Generator) -> Sample:
        image, mask = item["image"], torch.as_tensor(item["token_mask"]).bool()
        box = crop_box(mask.numpy(), self.max_crop, rng)
        mask = mask[box]
        flips, swap = draw_orientation(rng, self.flip_p, self.swap_p)
        lazy = isinstance(image, LazyVolume)  # then only the kept tokens are read, normalised and oriented
        if lazy:
            crop, mask = None, orient_grid(mask, flips, swap)
        else:
            crop, mask = orient(image[(slice(None), *voxel_box(box, self.patch))], mask, flips, swap)
        if int(mask.sum()) < 2:  # a crop of scattered foreground: use every token of it
            mask = torch.ones_like(mask)
        if lazy:
            coords = torch.nonzero(mask)  # C order over the crop's grid, as patchify's rows
            blocks = orient_blocks(
                image.blocks(source_tokens(coords.numpy(), box, flips, swap), self.patch), flips, swap
            )
            patches = torch.from_numpy(blocks.reshape(len(blocks), int(np.prod(blocks.shape[1:]))))
        else:
            patches, coords = patchify(crop, self.patch)
            keep = mask.reshape(-1)
            patches, coords = patches[keep].contiguous(), coords[keep].contiguous()
        context, target = self.draw_masks(mask.numpy(), mode, item["modality"], rng)
        flat = mask.numpy().reshape(-1)
        return Sample(
            patches=patches,
            coords=coords,
            context=torch.from_numpy(context.reshape(-1)[flat].copy()),
            target=torch.from_numpy(target.reshape(-1)[flat].copy()),
            modality=item["modality"],
            mode=mode,
            grid=tuple(mask.shape),
            fg_grid=mask,
            image=crop,
        )

    def draw_modes(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """The masking configuration of each of ``n`` items: half of each (Vol-JEPA)."""
        return balanced_modes(n, rng)

    def draw_masks(self, fg: np.ndarray, mode: int, modality: str, rng: np.random.Generator):
        """(context, target) bool grids over the crop's foreground ``fg`` (Vol-JEPA's, see ``masking``)."""
        return sample_masks(fg, mode, self.specs[modality], rng)

    def samples(self, items: list[dict]) -> list[Sample]:
        first = items[0]
        modes = self.draw_modes(len(items), self.rng(first["epoch"], first["offset"], 1))
        return [self.sample(it, int(m), self.rng(it["epoch"], it["offset"], 0)) for it, m in zip(items, modes)]

    def __call__(self, items: list[dict]) -> JepaBatch:
        batch = pack(self.samples(items))
        last = items[-1]
        batch.position = (int(last["epoch"]), int(last["offset"]) + 1)
        batch.keys = [(it["epoch"], it["index"]) for it in items]
        return batch


def pack(samples: list[Sample]) -> JepaBatch:
    """Concatenate samples; context/target become row indices into the concatenation."""
    n_fg = np.array([s.patches.shape[0] for s in samples])
    n_ctx = np.array([int(s.context.sum()) for s in samples])
    n_tgt = np.array([int(s.target.sum()) for s in samples])
    starts = np.concatenate([[0], np.cumsum(n_fg)[:-1]])
    ctx_idx = torch.cat([torch.nonzero(s.context).flatten() + int(o) for s, o in zip(samples, starts)])
    tgt_idx = torch.cat([torch.nonzero(s.target).flatten() + int(o) for s, o in zip(samples, starts)])
    cu, max_len = cu_seqlens_from_lengths(n_fg.tolist())
    cu_ctx, max_ctx = cu_seqlens_from_lengths(n_ctx.tolist())
    cu_tgt, max_tgt = cu_seqlens_from_lengths(n_tgt.tolist())
    return JepaBatch(
        patches=torch.cat([s.patches for s in samples]),
        coords=torch.cat([s.coords for s in samples]),
        cu=cu,
        max_len=max_len,
        ctx_idx=ctx_idx,
        cu_ctx=cu_ctx,
        max_ctx=max_ctx,
        tgt_idx=tgt_idx,
        cu_tgt=cu_tgt,
        max_tgt=max_tgt,
        modality=[s.modality for s in samples],
        mode=np.array([s.mode for s in samples]),
        n_foreground=n_fg,
        n_context=n_ctx,
    )


def mode_name(mode: int) -> str:
    return MODE_NAMES[int(mode)]
