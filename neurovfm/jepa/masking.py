"""Vol-JEPA context/target masks over the foreground of a token grid.

Two configurations, drawn in equal numbers in every minibatch:

* ``MULTI_BLOCK``: large 3D blocks, each centred on a foreground token not yet covered, are added until
  their union holds at least ``1 - context_ratio`` of the foreground; that union is the target and the
  remaining foreground is the context.
* ``CONTEXT_BLOCK``: one small 3D block, centred on a random foreground token and sized so it holds about
  ``context_ratio`` of the foreground, is the context; the rest of the foreground is the target.

A further ``drop_ratio`` of the context tokens is then moved to the target. Background tokens are never
context nor target. All masks are ``bool``: the authors' code applied ``~`` to a uint8 mask, which is
bitwise (0 -> 255, 1 -> 254, both "true"), so :func:`as_bool` converts any input first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

MULTI_BLOCK, CONTEXT_BLOCK = 0, 1
MODE_NAMES = {MULTI_BLOCK: "multi_block", CONTEXT_BLOCK: "context_block"}


@dataclass(frozen=True)
class MaskSpec:
    context_ratio: float  # share of the crop's foreground kept as context before the drop
    drop_ratio: float  # share of the context then moved to the target
    target_block_scale: tuple  # (lo, hi) per-axis extent of a target block, as a fraction of the grid
    context_block_aspect: tuple  # (lo, hi) per-axis stretch of the context block
    max_target_blocks: int


def spec_from_config(masking: dict, modality: str) -> MaskSpec:
    """``pretrain.masking`` -> the spec of one modality (context ratio is per modality)."""
    return MaskSpec(
        context_ratio=float(masking["context_ratio"][modality]),
        drop_ratio=float(masking["drop_ratio"]),
        target_block_scale=tuple(masking["target_block_scale"]),
        context_block_aspect=tuple(masking["context_block_aspect"]),
        max_target_blocks=int(masking["max_target_blocks"]),
    )


def as_bool(mask) -> np.ndarray:
    """Any mask (bool, uint8, int, float; numpy or torch) -> numpy bool, nonzero meaning True."""
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    return mask if mask.dtype == np.bool_ else mask != 0


def balanced_modes(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` configuration ids, half of each (the odd one drawn at random), in random order."""
    modes = np.array(
        [MULTI_BLOCK, CONTEXT_BLOCK] * (n // 2) + ([int(rng.integers(2))] if n % 2 else []), dtype=np.int64
    )
    return modes[rng.permutation(n)]


def _box(center, extent, shape) -> tuple[slice, ...]:
    """A box of ``extent`` tokens per axis around ``center``, clipped to the grid."""
    out = []
    for c, e, n in zip(center, extent, shape):
        lo = max(int(c) - int(e) // 2, 0)
        out.append(slice(lo, min(int(c) - int(e) // 2 + int(e), n)))
    return tuple(out)


def _integral(fg: np.ndarray) -> np.ndarray:
    """Summed-volume table with a zero border: box counts in O(1)."""
    s = np.zeros(tuple(n + 1 for n in fg.shape), dtype=np.int64)
    s[1:, 1:, 1:] = fg.astype(np.int64).cumsum(0).cumsum(1).cumsum(2)
    return s


def _box_count(table: np.ndarray, box: tuple[slice, ...]) -> int:
    (z0, z1), (y0, y1), (x0, x1) = ((b.start, b.stop) for b in box)
    t = table
    return int(
        t[z1, y1, x1]
        - t[z0, y1, x1]
        - t[z1, y0, x1]
        - t[z1, y1, x0]
        + t[z0, y0, x1]
        + t[z0, y1, x0]
        + t[z1, y0, x0]
        - t[z0, y0, x0]
    )


def _random_fg(fg_flat_idx: np.ndarray, shape, rng: np.random.Generator) -> tuple[int, int, int]:
    return np.unravel_index(int(fg_flat_idx[rng.integers(fg_flat_idx.size)]), shape)


def multi_block_target(fg: np.ndarray, spec: MaskSpec, rng: np.random.Generator) -> np.ndarray:
    """Union of large blocks covering at least ``1 - context_ratio`` of the foreground (bool grid)."""
    n_fg = int(fg.sum())
    goal = int(np.ceil((1.0 - spec.context_ratio) * n_fg))
    target = np.zeros_like(fg)
    lo, hi = spec.target_block_scale
    shape = np.asarray(fg.shape)
    for _ in range(spec.max_target_blocks):
        covered = int(target.sum())
        if covered >= goal:
            break
        free = np.flatnonzero(fg & ~target)
        center = _random_fg(free, fg.shape, rng)
        extent = np.maximum(np.rint(rng.uniform(lo, hi, size=3) * shape), 1)
        target[_box(center, extent, fg.shape)] = True
        target &= fg
    return target


def context_block(fg: np.ndarray, spec: MaskSpec, rng: np.random.Generator) -> np.ndarray:
    """One block around a random foreground token holding about ``context_ratio`` of the foreground."""
    n_fg = int(fg.sum())
    want = max(1, int(round(spec.context_ratio * n_fg)))
    center = _random_fg(np.flatnonzero(fg), fg.shape, rng)
    lo, hi = spec.context_block_aspect
    stretch = np.exp(rng.uniform(np.log(lo), np.log(hi), size=3))
    stretch /= np.prod(stretch) ** (1.0 / 3.0)
    table = _integral(fg)
    best, best_err = None, None
    for size in np.arange(1.0, 2.0 * max(fg.shape) + 1.0, 0.5):  # the count grows with the size
        extent = np.clip(np.rint(size * stretch), 1, fg.shape)
        box = _box(center, extent, fg.shape)
        count = _box_count(table, box)
        err = abs(count - want)
        if best_err is None or err < best_err:
            best, best_err = box, err
        if count >= want:
            break
    ctx = np.zeros_like(fg)
    ctx[best] = True
    return ctx & fg


def sample_masks(foreground, mode: int, spec: MaskSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(context, target) bool grids of ``foreground``'s shape: disjoint, both inside the foreground, their
    union the whole foreground, the context non-empty (and the target too when there are 2+ tokens)."""
    fg = as_bool(foreground)
    n_fg = int(fg.sum())
    if n_fg < 2:
        raise ValueError(f"a crop needs at least 2 foreground tokens for a context and a target, got {n_fg}")
    if mode == MULTI_BLOCK:
        context = fg & ~multi_block_target(fg, spec, rng)
    elif mode == CONTEXT_BLOCK:
        context = context_block(fg, spec, rng)
    else:
        raise ValueError(f"unknown masking configuration {mode!r}")
    idx = np.flatnonzero(context)
    if idx.size == 0:  # blocks covered everything: keep one random token visible
        idx = np.flatnonzero(fg)[[rng.integers(n_fg)]]
    if idx.size == n_fg:  # context block swallowed the foreground: leave one target
        idx = np.delete(idx, rng.integers(idx.size))
    n_drop = min(int(round(spec.drop_ratio * idx.size)), idx.size - 1)
    keep = rng.permutation(idx)[n_drop:]
    context = np.zeros(fg.shape, dtype=bool)
    context.flat[keep] = True
    return context, fg & ~context


def to_torch(mask: np.ndarray) -> torch.Tensor:
    """A numpy mask as a torch bool tensor (never uint8: ``~`` must be logical)."""
    return torch.from_numpy(as_bool(mask).copy())
