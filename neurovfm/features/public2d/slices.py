"""From a stored volume to 2D encoder inputs.

A stored volume is ``[slice, row, col]`` with the slice axis the native acquisition axis (docs/dataset.md); each
channel (one CT window, or the MR channel) is uint8 on the 0..255 scale of its window or MR scaling. Slices:

- :func:`slice_indices`: which slices are encoded: those whose slab of the token grid holds a foreground token
  (``foreground_only``), every ``stride``-th of them, at most ``max_slices`` (evenly spaced over the kept ones).
  The same slices for every CT window of a volume.
- :func:`to_images`: each slice to ``[0, 1]`` (``voxel / 255``), zero-padded to a centred square (no anatomy is
  cropped and the aspect ratio is kept), resized to ``image_size`` (bilinear, antialiased), grey replicated to 3
  channels, then normalised with the encoder's mean and std per channel. CT windows are separate images.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def slice_indices(
    n_slices: int, token_mask: np.ndarray | None, slab: int, stride: int, max_slices: int | None
) -> np.ndarray:
    """Indices of the encoded slices of a volume with ``n_slices`` slices. ``token_mask`` ``[t_slice, t_row,
    t_col]`` (None: every slice counts as foreground); ``slab``: slices per token along the slice axis."""
    if stride < 1 or (max_slices is not None and max_slices < 1):
        raise ValueError(f"slice stride {stride} and max_slices {max_slices} must be at least 1")
    keep = np.arange(n_slices)
    if token_mask is not None:
        fg_slab = np.asarray(token_mask).reshape(token_mask.shape[0], -1).any(axis=1)
        keep = keep[fg_slab[np.minimum(keep // slab, len(fg_slab) - 1)]]
    keep = keep[::stride]
    if max_slices is not None and len(keep) > max_slices:
        keep = keep[np.round(np.linspace(0, len(keep) - 1, max_slices)).astype(int)]
    return keep.astype(np.int64)


def to_images(slices: np.ndarray, image_size: int, mean, std) -> torch.Tensor:
    """uint8 slices ``[n, rows, cols]`` -> float32 normalised images ``[n, 3, image_size, image_size]``."""
    x = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32) / np.float32(255.0))
    n, rows, cols = x.shape
    side = max(rows, cols)
    top, left = (side - rows) // 2, (side - cols) // 2
    x = F.pad(x, (left, side - cols - left, top, side - rows - top))  # zero: below the window / MR background
    x = x.unsqueeze(1)
    if side != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    x = x.expand(n, 3, image_size, image_size)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - m) / s).contiguous()
