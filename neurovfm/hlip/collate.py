"""Turn the volumes of a batch of studies into one packed image batch and the studies' tokenised texts.

Per volume: a crop of at most ``max_crop_tokens`` per axis around the foreground (the whole volume when it fits,
as on the demo), then the crop's foreground tokens, of which at most ``max_tokens`` drawn at random (FLIP's token
dropping, Li et al. 2023: the encoder's cost falls with the tokens it sees, attention's with their square; the
features are later computed on every token; ``None`` keeps them all). There is no flip or axis swap: a report says "left" and
"right", and a mirrored image would contradict its text. Volumes are packed back to back (``cu``, one segment
per volume, for the encoder's attention) and the volumes of a study are adjacent (``study_cu``, one segment per
study, for the pooling). The crop of volume j of batch b comes from a generator seeded by (seed, rank, b, j),
so a batch is the same whichever worker builds it and after a resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from neurovfm.hlip.stream import MODALITIES
from neurovfm.hlip.text import TextTokenizer
from neurovfm.jepa.augment import crop_box
from neurovfm.models.packing import cu_seqlens_from_lengths
from neurovfm.models.patch_embed import gather_tokens
from neurovfm.store.dataset import LazyVolume

MODE_NAMES = {0: "whole"}  # context_fractions.csv: the share of each volume's foreground the encoder saw


@dataclass
class StudyBatch:
    patches: torch.Tensor  # [N, P] foreground tokens of every volume, packed
    coords: torch.Tensor  # [N, 3] long
    cu: torch.Tensor  # [V+1] int32, one segment per volume
    max_len: int
    study_cu: torch.Tensor  # [B+1] int32 over the same rows, one segment per study
    input_ids: torch.Tensor  # [B, L] the studies' texts
    attention_mask: torch.Tensor  # [B, L]
    study_modality: torch.Tensor  # [B] long, index into MODALITIES
    modality: list[str]  # per volume (metrics)
    mode: np.ndarray  # [V] zeros (metrics)
    n_foreground: np.ndarray  # [V] foreground tokens of the whole volume
    n_context: np.ndarray  # [V] of them in the crop, what the encoder sees
    position: tuple = (0, 0)  # stream position after this batch: (next batch, 0)
    keys: list = field(default_factory=list)

    def pin_memory(self) -> "StudyBatch":
        return StudyBatch(
            **{k: (v.pin_memory() if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        )

    def to(self, device) -> "StudyBatch":
        return StudyBatch(
            **{
                k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
                for k, v in self.__dict__.items()
            }
        )


class StudyCollator:
    """``collate_fn`` of the HLIP DataLoader (picklable for worker processes; holds the texts in memory)."""

    def __init__(
        self,
        pretrain: dict,
        patch,
        seed: int,
        texts: dict[str, str],
        tokenizer: TextTokenizer,
        rank=0,
        max_tokens: int | None = None,
    ):
        self.patch = tuple(int(p) for p in patch)
        self.max_crop = tuple(int(m) for m in pretrain["max_crop_tokens"])
        if max_tokens is not None and int(max_tokens) < 1:
            raise ValueError(f"max_tokens must be at least 1 (or None: every token), got {max_tokens}")
        self.max_tokens = None if max_tokens is None else int(max_tokens)
        self.seed, self.rank = int(seed), int(rank)
        self.texts, self.tokenizer = texts, tokenizer

    def volume(self, item: dict) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(patches, coords, foreground tokens of the whole volume) of one volume's crop."""
        rng = np.random.default_rng([self.seed, self.rank, int(item["epoch"]), int(item["offset"])])
        mask = np.asarray(item["token_mask"], dtype=bool)
        box = crop_box(mask, self.max_crop, rng)
        crop = mask[box]  # centred on a foreground token, so never empty
        keep = np.flatnonzero(crop)
        if self.max_tokens is not None and keep.size > self.max_tokens:  # a random subset, in raster order
            keep = keep[np.sort(rng.choice(keep.size, self.max_tokens, replace=False))]
        coords = np.stack(np.unravel_index(keep, crop.shape), axis=1)  # token indices inside the crop
        where = coords + np.array([b.start for b in box])  # ... and in the volume
        image = item["image"]
        if isinstance(image, LazyVolume):  # only the kept tokens are read and normalised
            patches = image.tokens(where, self.patch)
        else:
            image = np.asarray(image)
            blocks = [gather_tokens(image[c], where, self.patch) for c in range(image.shape[0])]
            patches = torch.from_numpy(np.stack(blocks, axis=1).reshape(len(where), -1))
        return patches, torch.from_numpy(coords), int(mask.sum())

    def __call__(self, items: list[dict]) -> StudyBatch:
        parts = [self.volume(it) for it in items]
        n_vol = [p[0].shape[0] for p in parts]
        studies, per_study = [], []
        for it, n in zip(items, n_vol):
            if not studies or studies[-1] != it["study_id"]:
                studies.append(it["study_id"])
                per_study.append(0)
            per_study[-1] += n
        if len(set(studies)) != len(studies):
            raise ValueError("a study's volumes must be adjacent in a batch and a study may appear once")
        modality = {it["study_id"]: it["modality"] for it in items}
        cu, max_len = cu_seqlens_from_lengths(n_vol)
        study_cu, _ = cu_seqlens_from_lengths(per_study)
        input_ids, attention_mask = self.tokenizer([self.texts[s] for s in studies])
        return StudyBatch(
            patches=torch.cat([p[0] for p in parts]),
            coords=torch.cat([p[1] for p in parts]),
            cu=cu,
            max_len=max_len,
            study_cu=study_cu,
            input_ids=input_ids,
            attention_mask=attention_mask,
            study_modality=torch.tensor([MODALITIES.index(modality[s]) for s in studies]),
            modality=[it["modality"] for it in items],
            mode=np.zeros(len(items), dtype=np.int64),
            n_foreground=np.array([p[2] for p in parts]),
            n_context=np.array(n_vol),
            position=(int(items[-1]["epoch"]) + 1, 0),
            keys=[(it["epoch"], it["index"]) for it in items],
        )
