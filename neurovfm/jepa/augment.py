"""Training crop and orientation augmentation of a volume and its token mask, before tokenising.

Student and teacher see the same tokens (the teacher gets all of the crop's foreground, the student the
context subset), so transforming the volume once before cutting patches makes the augmentation identical
for both by construction; token coordinates are recomputed from the transformed grid.

Axis permutations are limited to swapping the two in-plane axes: the slice axis has 4-voxel (4 mm) patch
sides and the in-plane axes 16-voxel (16 mm) ones, so moving the slice axis in-plane would change what a
token is. Flips act on all three axes (as in the authors' code).
"""

from __future__ import annotations

import numpy as np
import torch


def crop_box(token_mask: np.ndarray, max_tokens, rng: np.random.Generator) -> tuple[slice, ...]:
    """A crop of at most ``max_tokens`` (z, y, x) tokens, centred on a random foreground token (shifted to
    stay inside the grid), so every crop holds foreground. Token-grid slices."""
    shape = token_mask.shape
    fg = np.flatnonzero(token_mask)
    anchor = np.unravel_index(int(fg[rng.integers(fg.size)]), shape) if fg.size else tuple(n // 2 for n in shape)
    box = []
    for a, n, m in zip(anchor, shape, max_tokens):
        size = min(int(n), int(m))
        lo = int(np.clip(int(a) - size // 2, 0, n - size))
        box.append(slice(lo, lo + size))
    return tuple(box)


def voxel_box(token_box: tuple[slice, ...], patch) -> tuple[slice, ...]:
    return tuple(slice(s.start * p, s.stop * p) for s, p in zip(token_box, patch))


def draw_orientation(rng: np.random.Generator, flip_p: float, swap_inplane_p: float) -> tuple[tuple[bool, ...], bool]:
    """(flip per axis z, y, x; swap of the in-plane axes y <-> x)."""
    flips = tuple(bool(f) for f in rng.random(3) < flip_p)
    return flips, bool(rng.random() < swap_inplane_p)


def orient(image: torch.Tensor, token_mask: torch.Tensor, flips, swap: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the same flips and in-plane swap to a volume [C, Z, Y, X] and its token grid [z, y, x]."""
    dims = [d for d, f in zip((1, 2, 3), flips) if f]
    if dims:
        image = torch.flip(image, dims)
    if swap:
        image = image.transpose(2, 3)
    return image.contiguous(), orient_grid(token_mask, flips, swap)


def orient_grid(token_mask: torch.Tensor, flips, swap: bool) -> torch.Tensor:
    """The flips and in-plane swap of :func:`orient` on a token grid [z, y, x] alone."""
    dims = [d for d, f in zip((0, 1, 2), flips) if f]
    if dims:
        token_mask = torch.flip(token_mask, dims)
    if swap:
        token_mask = token_mask.transpose(1, 2)
    return token_mask.contiguous()


def source_tokens(coords: np.ndarray, token_box: tuple[slice, ...], flips, swap: bool) -> np.ndarray:
    """Grid positions [K, 3] in the whole volume of the tokens at ``coords`` [K, 3] of the crop ``token_box`` after
    :func:`orient`: the token whose voxels :func:`orient` moved there."""
    src = np.array(coords, dtype=np.int64).reshape(-1, 3)
    if swap:
        src = src[:, [0, 2, 1]]
    for axis, (cut, flipped) in enumerate(zip(token_box, flips)):
        if flipped:
            src[:, axis] = (cut.stop - cut.start - 1) - src[:, axis]
        src[:, axis] += cut.start
    return src


def orient_blocks(blocks: np.ndarray, flips, swap: bool) -> np.ndarray:
    """The voxels of token blocks [K, C, pz, py, px] as :func:`orient` leaves them inside each token: a flipped axis
    reverses the block along it, the in-plane swap transposes it (square in-plane patches, as :func:`orient`
    requires). With :func:`source_tokens`, ``orient_blocks(blocks at source_tokens(...))`` equals the tokens that
    patchify cuts from the oriented crop, without orienting (or reading) the rest of the volume."""
    if swap and blocks.shape[3] != blocks.shape[4]:
        raise ValueError(f"the in-plane swap needs square in-plane patches, got {blocks.shape[3:]}")
    dims = tuple(d for d, f in zip((2, 3, 4), flips) if f)
    if dims:
        blocks = np.flip(blocks, dims)
    if swap:
        blocks = blocks.swapaxes(3, 4)
    return np.ascontiguousarray(blocks)
