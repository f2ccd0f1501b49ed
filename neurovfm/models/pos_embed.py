"""Fixed 3D sine-cosine position encoding from integer token coordinates, and the two ways of joining it to the
token embedding.

Computed on the fly from the coordinates, so it is defined for any volume size: training crops and whole
volumes at inference share one encoding.

* ``add`` (I-JEPA / MAE convention): the code spans the full width and is added to the token embedding.
* ``concat`` (the authors' code): the patch projection is ``pos_dim`` narrower and a ``pos_dim``-wide code is
  concatenated to it, so position and content occupy separate channels. At demo grid sizes (a few dozen tokens
  per axis) most low-frequency channels of a full-width code are nearly constant, an offset that LayerNorm turns
  into a content-dependent signal; concatenating keeps content channels free of it.
"""

from __future__ import annotations

import torch
from torch import Tensor

POS_MODES = ("add", "concat")


def sincos_3d(coords: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Integer coordinates [N, 3] (z, y, x) -> float32 encoding [N, dim].

    Each axis gets the same even number of channels, 2 * (dim // 6): half sines, half cosines over
    geometrically spaced frequencies from 1 down to ~1/max_period. Left-over channels (dim % 6) are zeros.
    Computed in float64 so that large coordinates stay accurate.
    """
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"coords must be [N, 3], got {tuple(coords.shape)}")
    if dim < 6:
        raise ValueError(f"dim must be at least 6, got {dim}")
    n_freq = dim // 6
    exponent = torch.arange(n_freq, dtype=torch.float64, device=coords.device) / n_freq
    freqs = max_period ** (-exponent)  # [F]
    angles = coords.to(torch.float64)[:, :, None] * freqs  # [N, 3, F]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], -1).reshape(coords.shape[0], 6 * n_freq)
    pad = dim - 6 * n_freq
    if pad:
        emb = torch.cat([emb, emb.new_zeros(coords.shape[0], pad)], 1)
    return emb.float()


def content_width(width: int, mode: str, pos_dim: int) -> int:
    """Channels left for the token content: ``width`` when adding, ``width - pos_dim`` when concatenating."""
    if mode not in POS_MODES:
        raise ValueError(f"position mode must be one of {POS_MODES}, got {mode!r}")
    if mode == "add":
        return width
    if not 6 <= pos_dim < width:
        raise ValueError(f"pos_dim must be at least 6 and below the width {width}, got {pos_dim}")
    return width - pos_dim


def with_position(x: Tensor, coords: Tensor, mode: str, pos_dim: int) -> Tensor:
    """Join the position code of ``coords`` to content ``x`` [N, C]: add a C-wide code, or concatenate a
    ``pos_dim``-wide one (-> [N, C + pos_dim])."""
    if mode == "add":
        return x + sincos_3d(coords, x.shape[1]).to(device=x.device, dtype=x.dtype)
    if mode == "concat":
        return torch.cat([x, sincos_3d(coords, pos_dim).to(device=x.device, dtype=x.dtype)], dim=1)
    raise ValueError(f"position mode must be one of {POS_MODES}, got {mode!r}")
