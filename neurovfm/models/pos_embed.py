"""Fixed 3D sine-cosine position encoding from integer token coordinates.

Computed on the fly from the coordinates, so it is defined for any volume size: training crops and whole
volumes at inference share one encoding. Our models ADD it to the token embedding (the authors concatenate a
table; adding keeps the width and is the I-JEPA / MAE convention).
"""
from __future__ import annotations

import torch
from torch import Tensor


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
    freqs = max_period ** (-exponent)                                     # [F]
    angles = coords.to(torch.float64)[:, :, None] * freqs                 # [N, 3, F]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], -1).reshape(coords.shape[0], 6 * n_freq)
    pad = dim - 6 * n_freq
    if pad:
        emb = torch.cat([emb, emb.new_zeros(coords.shape[0], pad)], 1)
    return emb.float()
