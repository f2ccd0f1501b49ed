"""Crop, flips and in-plane swap act on the volume before tokenising, identically for student and teacher;
the packed batch keeps foreground tokens only, in equal numbers of both masking configurations."""

import numpy as np
import torch

from neurovfm.config import default_config
from neurovfm.jepa.augment import crop_box, orient
from neurovfm.jepa.collate import Collator
from neurovfm.jepa.toy import ToyVolumes
from neurovfm.models.patch_embed import patchify

PATCH = (4, 16, 16)


def token_volume(mask: torch.Tensor) -> torch.Tensor:
    """A volume whose every voxel holds its token's flat index (+1) where the token is foreground, else 0."""
    ids = (torch.arange(mask.numel()).reshape(mask.shape) + 1) * mask
    return (
        ids.repeat_interleave(PATCH[0], 0).repeat_interleave(PATCH[1], 1).repeat_interleave(PATCH[2], 2)[None].float()
    )


def test_orient_moves_volume_and_token_mask_together():
    rng = np.random.default_rng(0)
    mask = torch.from_numpy(rng.random((3, 4, 5)) > 0.4)
    image = token_volume(mask)
    for flips in [(False, False, False), (True, False, False), (False, True, True), (True, True, True)]:
        for swap in (False, True):
            img, m = orient(image, mask, flips, swap)
            patches, coords = patchify(img, PATCH)
            assert (patches != 0).all(1).eq(m.reshape(-1)).all(), "foreground tokens follow the voxels"
            assert (patches == patches[:, :1]).all(), "a token's voxels stay one token"
            assert tuple(coords.max(0).values + 1) == tuple(m.shape), "coordinates recomputed on the new grid"
            if any(flips) or swap:
                assert not torch.equal(patches[:, 0], patchify(image, PATCH)[0][:, 0])


def test_crop_bounded_and_holds_foreground():
    rng = np.random.default_rng(1)
    mask = np.zeros((30, 25, 8), bool)
    mask[20:24, 3:6, 2:4] = True
    for _ in range(20):
        box = crop_box(mask, (20, 20, 20), rng)
        assert [s.stop - s.start for s in box] == [20, 20, 8]
        assert mask[box].any()


def test_student_and_teacher_see_the_same_augmented_tokens():
    cfg = default_config()
    data = ToyVolumes(n=6, grid=(5, 6, 6), seed=3)
    collate = Collator(cfg["pretrain"], PATCH, seed=11)
    items = [dict(data[i], epoch=0, offset=i, index=i) for i in range(6)]
    batch = collate(items)
    samples = collate.samples(items)
    # the teacher's input is every foreground token; the student's the context rows of the same pack
    assert batch.patches.shape[0] == sum(int(s.fg_grid.sum()) for s in samples)
    assert torch.equal(batch.patches[batch.ctx_idx], torch.cat([s.patches[s.context] for s in samples]))
    assert torch.equal(batch.coords[batch.tgt_idx], torch.cat([s.coords[s.target] for s in samples]))
    assert len(set(batch.ctx_idx.tolist()) & set(batch.tgt_idx.tolist())) == 0
    assert len(batch.ctx_idx) + len(batch.tgt_idx) == batch.patches.shape[0]
    assert np.bincount(batch.mode, minlength=2).tolist() == [3, 3]
    assert (batch.cu_ctx.diff().numpy() == batch.n_context).all()
    # same keys -> same batch (whatever process builds it); another position -> other masks
    again = collate(items)
    assert torch.equal(again.ctx_idx, batch.ctx_idx) and torch.equal(again.patches, batch.patches)
    moved = collate([dict(it, offset=it["offset"] + 100) for it in items])
    assert not torch.equal(moved.ctx_idx, batch.ctx_idx) or not torch.equal(moved.patches, batch.patches)
