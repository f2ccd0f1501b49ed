"""Vol-JEPA masks: foreground only, disjoint, context fraction near the paper's ratios, context drop,
balanced configurations, boolean semantics."""

import numpy as np
import pytest
import torch

from neurovfm.config import default_config
from neurovfm.jepa.masking import (
    CONTEXT_BLOCK,
    MULTI_BLOCK,
    MaskSpec,
    as_bool,
    balanced_modes,
    sample_masks,
    spec_from_config,
    to_torch,
)

CFG = default_config()
MASKING = CFG["pretrain"]["masking"]


def head(shape=(12, 16, 16), seed=0, holes=True) -> np.ndarray:
    """An ellipsoidal foreground with some background holes (air in sinuses)."""
    rng = np.random.default_rng(seed)
    axes = np.meshgrid(*[np.arange(n) + 0.5 for n in shape], indexing="ij")
    radii = rng.uniform(0.7, 0.95, 3) * np.asarray(shape) / 2
    fg = sum(((a - n / 2) / r) ** 2 for a, n, r in zip(axes, shape, radii)) < 1.0
    if holes:
        fg &= rng.random(shape) > 0.05
    return fg


@pytest.mark.parametrize("mode", [MULTI_BLOCK, CONTEXT_BLOCK])
@pytest.mark.parametrize("modality", ["MR", "CT"])
def test_masks_partition_the_foreground(mode, modality):
    spec = spec_from_config(MASKING, modality)
    rng = np.random.default_rng(1)
    for seed in range(20):
        fg = head(seed=seed)
        ctx, tgt = sample_masks(fg, mode, spec, rng)
        assert ctx.dtype == np.bool_ and tgt.dtype == np.bool_
        assert not (ctx & tgt).any(), "context and target overlap"
        assert not ((ctx | tgt) & ~fg).any(), "a background token was used"
        assert ((ctx | tgt) == fg).all(), "every foreground token is context or target"
        assert ctx.any() and tgt.any()


@pytest.mark.parametrize("modality,paper_median", [("MR", 0.188), ("CT", 0.151)])
def test_context_fraction_near_the_paper(modality, paper_median):
    """Context share of the foreground after the 20% drop: about ratio x 0.8 (MRI 20%, CT 16%) for the
    context-block configuration, at most that for multi-block; the median over both near the paper's."""
    spec = spec_from_config(MASKING, modality)
    goal = spec.context_ratio * (1 - spec.drop_ratio)
    rng = np.random.default_rng(2)
    frac = {MULTI_BLOCK: [], CONTEXT_BLOCK: []}
    for seed in range(60):
        fg = head(shape=(16, 20, 20), seed=seed)
        for mode in frac:
            ctx, _ = sample_masks(fg, mode, spec, rng)
            frac[mode].append(ctx.sum() / fg.sum())
    assert abs(np.median(frac[CONTEXT_BLOCK]) - goal) < 0.02
    assert goal - 0.06 < np.median(frac[MULTI_BLOCK]) <= goal + 0.005
    both = np.median(frac[MULTI_BLOCK] + frac[CONTEXT_BLOCK])
    assert abs(both - paper_median) < 0.025


def test_dropped_context_becomes_target():
    fg = head(seed=3)
    kept = MaskSpec(0.25, 0.0, (0.3, 0.6), (0.5, 2.0), 200)
    dropped = MaskSpec(0.25, 0.2, (0.3, 0.6), (0.5, 2.0), 200)
    for mode in (MULTI_BLOCK, CONTEXT_BLOCK):
        full, _ = sample_masks(fg, mode, kept, np.random.default_rng(7))
        ctx, tgt = sample_masks(fg, mode, dropped, np.random.default_rng(7))
        assert not (ctx & ~full).any(), "the drop only removes context tokens"
        assert ctx.sum() == full.sum() - round(0.2 * full.sum())
        assert tgt[full & ~ctx].all(), "dropped context tokens are targets"


def test_configurations_are_balanced():
    rng = np.random.default_rng(0)
    for n in range(1, 12):
        modes = balanced_modes(n, rng)
        counts = np.bincount(modes, minlength=2)
        assert abs(counts[0] - counts[1]) <= n % 2
        assert counts.sum() == n


def test_masks_are_boolean_not_bitwise():
    """``~`` on a uint8 mask is bitwise (the authors' bug): both values stay 'true'. Masks must be bool."""
    u8 = torch.tensor([0, 1], dtype=torch.uint8)
    assert (~u8).tolist() == [255, 254]  # what goes wrong with uint8
    assert (~u8.bool()).tolist() == [True, False]
    fg = head(seed=4)
    spec = spec_from_config(MASKING, "MR")
    from_bool = sample_masks(fg, MULTI_BLOCK, spec, np.random.default_rng(5))
    from_u8 = sample_masks(torch.from_numpy(fg.astype(np.uint8)), MULTI_BLOCK, spec, np.random.default_rng(5))
    for a, b in zip(from_bool, from_u8):
        assert (a == b).all()
    t = to_torch(from_u8[0])
    assert t.dtype == torch.bool
    assert ((~t) == torch.from_numpy(~from_u8[0])).all()
    assert as_bool(np.array([0, 2, 255], dtype=np.uint8)).tolist() == [False, True, True]


def test_tiny_foreground():
    spec = spec_from_config(MASKING, "CT")
    fg = np.zeros((2, 2, 2), bool)
    fg[0, 0, :] = True
    for mode in (MULTI_BLOCK, CONTEXT_BLOCK):
        ctx, tgt = sample_masks(fg, mode, spec, np.random.default_rng(0))
        assert ctx.sum() == 1 and tgt.sum() == 1
    fg[0, 0, 1] = False
    with pytest.raises(ValueError, match="at least 2 foreground tokens"):
        sample_masks(fg, MULTI_BLOCK, spec, np.random.default_rng(0))
