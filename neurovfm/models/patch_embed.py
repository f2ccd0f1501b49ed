"""Volume <-> patch tokens and the linear patch embedding.

A volume [C, Z, Y, X] is cut into non-overlapping pz x py x px patches (4 x 16 x 16 in the paper, so 1,024
values per channel); the first array axis is the slice axis (see the preprocessing stage).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn


def _grid(shape, patch_size) -> tuple[int, int, int]:
    if len(shape) != 3 or len(patch_size) != 3:
        raise ValueError(f"expected 3 spatial axes, got shape {tuple(shape)} and patch {tuple(patch_size)}")
    for n, p in zip(shape, patch_size):
        if n % p or n == 0:
            raise ValueError(f"volume shape {tuple(shape)} is not a positive multiple of patch {tuple(patch_size)}")
    return tuple(n // p for n, p in zip(shape, patch_size))


def patchify(volume: Tensor, patch_size) -> tuple[Tensor, Tensor]:
    """[C, Z, Y, X] -> (patches [Nz*Ny*Nx, C*pz*py*px], coords [N, 3] long).

    Tokens are in C order over the (z, y, x) grid; each patch row is flattened as (c, dz, dy, dx).
    ``coords`` holds the integer token indices (z, y, x) of every row.
    """
    if volume.ndim != 4:
        raise ValueError(f"volume must be [C, Z, Y, X], got {tuple(volume.shape)}")
    c = volume.shape[0]
    pz, py, px = patch_size
    nz, ny, nx = _grid(volume.shape[1:], patch_size)
    p = volume.reshape(c, nz, pz, ny, py, nx, px).permute(1, 3, 5, 0, 2, 4, 6)
    patches = p.reshape(nz * ny * nx, c * pz * py * px)
    coords = torch.stack(torch.meshgrid(torch.arange(nz), torch.arange(ny), torch.arange(nx), indexing="ij"), -1)
    return patches, coords.reshape(-1, 3).to(volume.device)


def gather_tokens(volume: np.ndarray, coords, patch_size) -> np.ndarray:
    """The voxel blocks [K, pz, py, px] of the tokens at integer grid positions ``coords`` [K, 3] (z, y, x) of a
    [Z, Y, X] array: row k equals ``patchify(volume[None], patch_size)[0]`` at that token, but only the K blocks are
    copied (a collator that keeps a few tokens of a volume need not cut all of them)."""
    nz, ny, nx = _grid(volume.shape, patch_size)
    pz, py, px = patch_size
    coords = np.asarray(coords, dtype=np.int64).reshape(-1, 3)
    blocks = volume.reshape(nz, pz, ny, py, nx, px)
    # advanced indices separated by slices: numpy puts the token axis first -> [K, pz, py, px]
    return blocks[coords[:, 0], :, coords[:, 1], :, coords[:, 2], :]


def unpatchify(patches: Tensor, grid_shape, patch_size, channels: int) -> Tensor:
    """Inverse of :func:`patchify` for a full grid: [Nz*Ny*Nx, C*pz*py*px] -> [C, Z, Y, X]."""
    nz, ny, nx = grid_shape
    pz, py, px = patch_size
    if patches.shape != (nz * ny * nx, channels * pz * py * px):
        raise ValueError(
            f"patches {tuple(patches.shape)} do not fit grid {tuple(grid_shape)}, "
            f"patch {tuple(patch_size)}, {channels} channel(s)"
        )
    p = patches.reshape(nz, ny, nx, channels, pz, py, px).permute(3, 0, 4, 1, 5, 2, 6)
    return p.reshape(channels, nz * pz, ny * py, nx * px)


class PatchEmbed3D(nn.Module):
    """Linear embedding of flattened patches (equivalent to a stride = kernel Conv3d, on packed tokens)."""

    def __init__(self, patch_size=(4, 16, 16), in_chans: int = 1, embed_dim: int = 768):
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.in_chans = in_chans
        self.patch_dim = in_chans * math.prod(self.patch_size)
        self.proj = nn.Linear(self.patch_dim, embed_dim)

    def forward(self, patches: Tensor) -> Tensor:
        if patches.ndim != 2 or patches.shape[1] != self.patch_dim:
            raise ValueError(f"patches must be [N, {self.patch_dim}], got {tuple(patches.shape)}")
        return self.proj(patches)
