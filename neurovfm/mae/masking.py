"""VideoMAE masks over the foreground of a token grid: a fixed share of the foreground tokens is hidden.

The grid is cut into masking units, and units are hidden whole, in random order, until ``ratio`` of the crop's
foreground tokens are hidden (the last unit drawn is cut to the exact count, its first foreground tokens in
raster order). Background tokens are neither visible nor masked: they are not in the packed batch at all.

* ``tube`` (VideoMAE's tube masking, the slice axis playing time): a unit is one in-plane position (y, x) through
  every slice of the crop, so a hidden token's neighbours along z are hidden too.
* ``block``: a unit is a ``block`` = (bz, by, bx) cuboid of tokens on a fixed tiling of the grid.
* ``random``: a unit is one token (MAE's random masking; the paper's Extended Data Fig. 6d calls its baseline's
  masking random, its Methods "foreground-aware").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurovfm.jepa.masking import as_bool

MASK_TYPES = ("tube", "block", "random")
MODE_NAMES = dict(enumerate(MASK_TYPES))  # masking configuration id -> name (context_fractions.csv)


@dataclass(frozen=True)
class MaeMaskSpec:
    ratio: float  # share of the crop's foreground tokens that is masked (VideoMAE baseline: 0.85)
    kind: str  # tube | block | random
    block: tuple = (2, 2, 2)  # token extent (z, y, x) of a block unit (kind block)

    def __post_init__(self):
        if not 0.0 < self.ratio < 1.0:
            raise ValueError(f"mask ratio must be in (0, 1), got {self.ratio}")
        if self.kind not in MASK_TYPES:
            raise ValueError(f"mask type must be one of {MASK_TYPES}, got {self.kind!r}")
        if len(self.block) != 3 or min(self.block) < 1:
            raise ValueError(f"mask block must be 3 positive token counts, got {self.block}")

    @property
    def mode(self) -> int:
        return MASK_TYPES.index(self.kind)


def spec_from_model(model: dict) -> MaeMaskSpec:
    """A ``pretrain.models`` entry with ``objective: videomae`` -> its mask spec."""
    return MaeMaskSpec(
        ratio=float(model["mask_ratio"]),
        kind=str(model["mask_type"]),
        block=tuple(int(b) for b in model.get("mask_block", (2, 2, 2))),
    )


def unit_ids(shape, kind: str, block=(2, 2, 2)) -> np.ndarray:
    """Integer grid of ``shape`` (z, y, x): the masking unit of every token."""
    z, y, x = np.indices(tuple(shape))
    if kind == "tube":
        return y * shape[2] + x
    if kind == "block":
        bz, by, bx = (int(b) for b in block)
        ny, nx = -(-shape[1] // by), -(-shape[2] // bx)
        return ((z // bz) * ny + y // by) * nx + x // bx
    if kind == "random":
        return (z * shape[1] + y) * shape[2] + x
    raise ValueError(f"mask type must be one of {MASK_TYPES}, got {kind!r}")


def n_masked(n_foreground: int, ratio: float) -> int:
    """Masked tokens of a crop: ``ratio`` of its foreground, rounded, leaving at least one token each side."""
    if n_foreground < 2:
        raise ValueError(f"a crop needs at least 2 foreground tokens to mask some and show some, got {n_foreground}")
    return min(max(int(round(ratio * n_foreground)), 1), n_foreground - 1)


def mask_foreground(foreground, spec: MaeMaskSpec, rng: np.random.Generator) -> np.ndarray:
    """Bool grid of ``foreground``'s shape: the masked tokens, all inside the foreground, exactly
    :func:`n_masked` of them, made of whole units except for the last unit drawn."""
    fg = as_bool(foreground)
    goal = n_masked(int(fg.sum()), spec.ratio)
    fg_idx = np.flatnonzero(fg)  # raster order
    unit_of = unit_ids(fg.shape, spec.kind, spec.block).reshape(-1)[fg_idx]
    units, position = np.unique(unit_of, return_inverse=True)
    rank = np.empty(units.size, dtype=np.int64)
    rank[rng.permutation(units.size)] = np.arange(units.size)  # the order in which units are drawn
    drawn = fg_idx[np.argsort(rank[position], kind="stable")]  # tokens unit by unit, raster order within a unit
    masked = np.zeros(fg.shape, dtype=bool)
    masked.flat[drawn[:goal]] = True
    return masked


def visible_and_masked(foreground, spec: MaeMaskSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(visible, masked) bool grids: disjoint, both inside the foreground, their union the whole foreground."""
    fg = as_bool(foreground)
    masked = mask_foreground(fg, spec, rng)
    return fg & ~masked, masked
