"""VideoMAE masks: 85% of each crop's foreground tokens, only foreground, made of whole tubes (or blocks) but for
the last unit drawn; the same masks through the pretraining collator."""

import numpy as np
import pytest

from neurovfm.config import default_config
from neurovfm.jepa.toy import ToyVolumes
from neurovfm.mae.masking import MaeMaskSpec, mask_foreground, n_masked, unit_ids, visible_and_masked
from neurovfm.mae.train import MaskCollator


def foregrounds():
    """Ellipsoids, a random scatter and a full grid, of several shapes."""
    rng = np.random.default_rng(0)
    out = []
    for shape in [(6, 8, 8), (20, 20, 20), (3, 11, 7), (1, 4, 4)]:
        axes = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
        out.append(sum(a**2 for a in axes) < 1.1)
        out.append(rng.random(shape) < 0.4)
        out.append(np.ones(shape, dtype=bool))
    return [fg for fg in out if fg.sum() >= 2]


@pytest.mark.parametrize("kind", ["tube", "block", "random"])
def test_mask_is_085_of_the_foreground_and_only_foreground(kind):
    spec = MaeMaskSpec(ratio=0.85, kind=kind, block=(2, 3, 3))
    for i, fg in enumerate(foregrounds()):
        for seed in range(3):
            visible, masked = visible_and_masked(fg, spec, np.random.default_rng([i, seed]))
            n_fg = int(fg.sum())
            assert masked.sum() == n_masked(n_fg, 0.85) == min(max(round(0.85 * n_fg), 1), n_fg - 1)
            assert not (masked & ~fg).any() and not (visible & ~fg).any()
            assert not (masked & visible).any() and np.array_equal(masked | visible, fg)
            assert visible.any()


def test_ratio_is_exact_on_a_large_crop():
    fg = np.ones((20, 20, 20), dtype=bool)
    fg[:, :3] = False  # background rows are never masked nor visible
    masked = mask_foreground(fg, MaeMaskSpec(0.85, "tube"), np.random.default_rng(1))
    assert masked.sum() == round(0.85 * fg.sum()) and not masked[:, :3].any()


def _partial_units(fg, masked, ids):
    """Units whose foreground is masked in part (neither all nor none)."""
    partial = []
    for u in np.unique(ids[fg]):
        in_unit = fg & (ids == u)
        k = int((masked & in_unit).sum())
        if 0 < k < int(in_unit.sum()):
            partial.append(u)
    return partial


@pytest.mark.parametrize("kind,block", [("tube", (2, 2, 2)), ("block", (2, 2, 2)), ("block", (1, 4, 3))])
def test_masks_are_whole_units_but_the_last(kind, block):
    spec = MaeMaskSpec(ratio=0.85, kind=kind, block=block)
    for i, fg in enumerate(foregrounds()):
        masked = mask_foreground(fg, spec, np.random.default_rng(i))
        ids = unit_ids(fg.shape, kind, block)
        partial = _partial_units(fg, masked, ids)
        assert len(partial) <= 1, (fg.shape, partial)
        for u in partial:  # the cut unit: its first foreground tokens in raster order (for a tube: lowest slices)
            tokens = np.flatnonzero((fg & (ids == u)).reshape(-1))
            hidden = masked.reshape(-1)[tokens]
            assert hidden[: hidden.sum()].all() and not hidden[hidden.sum() :].any()


def test_tubes_run_through_every_slice():
    ids = unit_ids((5, 3, 4), "tube")
    assert (ids == ids[0]).all() and len(np.unique(ids)) == 12  # one unit per in-plane position
    blocks = unit_ids((4, 4, 5), "block", (2, 2, 2))
    assert len(np.unique(blocks)) == 2 * 2 * 3 and len(np.unique(blocks[:2, :2, :2])) == 1
    assert len(np.unique(unit_ids((4, 4, 5), "random"))) == 80  # one token per unit


def test_masks_are_random_but_reproducible():
    fg = np.ones((6, 8, 8), dtype=bool)
    spec = MaeMaskSpec(0.85, "tube")
    a = mask_foreground(fg, spec, np.random.default_rng(5))
    b = mask_foreground(fg, spec, np.random.default_rng(5))
    c = mask_foreground(fg, spec, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_bad_specs_are_refused():
    with pytest.raises(ValueError, match="ratio"):
        MaeMaskSpec(1.0, "tube")
    with pytest.raises(ValueError, match="mask type"):
        MaeMaskSpec(0.85, "checkerboard")
    with pytest.raises(ValueError, match="at least 2"):
        mask_foreground(np.eye(3, dtype=bool)[None][:, :1], MaeMaskSpec(0.85, "tube"), np.random.default_rng(0))


def test_collator_packs_visible_and_masked_tokens_of_the_foreground():
    cfg = default_config()
    data = ToyVolumes(n=6, grid=(6, 8, 8), seed=0)
    collate = MaskCollator(cfg["pretrain"], cfg["preprocess"]["patch"], seed=3, spec=MaeMaskSpec(0.85, "tube"))
    items = [{**data[i], "epoch": 0, "offset": i} for i in range(4)]
    batch = collate(items)
    assert (batch.mode == 0).all()  # tube
    n_fg = batch.n_foreground
    assert batch.patches.shape[0] == n_fg.sum()
    assert list(batch.n_foreground - batch.n_context) == [n_masked(int(n), 0.85) for n in n_fg]
    rows = np.sort(np.concatenate([batch.ctx_idx.numpy(), batch.tgt_idx.numpy()]))
    assert np.array_equal(rows, np.arange(batch.patches.shape[0]))  # disjoint, together every foreground token
    again = collate(items)
    assert np.array_equal(again.tgt_idx.numpy(), batch.tgt_idx.numpy())  # seeded by (seed, rank, epoch, offset)
