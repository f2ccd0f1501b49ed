"""Unsupervised brain parenchyma from dense token embeddings (Extended Data Fig. 13e).

Sliding-window inference: the volume is encoded once per window offset (a shift of the token grid by a fraction of
a patch, ``stride_vox`` apart along each axis), foreground tokens only, as in extraction. k-means (k = 3) is fitted
on the tokens of the first window (offset 0) and assigns every token of every window to a cluster; each token votes
for its cluster on all voxels it covers and every voxel takes the majority vote (ties: the lower cluster; voxels
no foreground token covers are left unassigned, -1). The brain cluster is the one whose mask has the highest IoU
with the reference brain mask; that IoU is the volume's score.
"""

from __future__ import annotations

import itertools

import numpy as np


def window_offsets(patch, stride) -> list[tuple[int, int, int]]:
    """Offsets (slice, row, col) of every window, the first one (0, 0, 0)."""
    return list(itertools.product(*(range(0, int(p), int(s)) for p, s in zip(patch, stride))))


def window_view(shape, offset, patch) -> tuple[slice, slice, slice]:
    """The whole-patch part of the volume starting at ``offset``."""
    return tuple(slice(o, o + (n - o) // p * p) for n, o, p in zip(shape, offset, patch))


def vote_map(shape, windows, patch, k: int) -> np.ndarray:
    """Voxel-wise majority cluster over ``windows``: iterable of (offset, coords [n, 3] token indices in the
    window, clusters [n]); -1 where no token votes."""
    counts = np.zeros((k, *shape), np.int32)
    ps = np.asarray(patch, int)
    for offset, coords, clusters in windows:
        starts = np.asarray(coords, int) * ps + np.asarray(offset, int)
        for (s, r, c), cl in zip(starts, clusters):
            counts[int(cl), s : s + ps[0], r : r + ps[1], c : c + ps[2]] += 1
    out = counts.argmax(axis=0).astype(np.int16)
    out[counts.sum(axis=0) == 0] = -1
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else float("nan")


def best_cluster(cluster_map: np.ndarray, brain: np.ndarray, k: int) -> tuple[int, list[float]]:
    """(cluster with the highest IoU against ``brain``, IoU of every cluster)."""
    ious = [iou(cluster_map == c, brain) for c in range(k)]
    return int(np.nanargmax(ious)), ious


def dense_clusters(
    encode,
    image: np.ndarray,
    foreground: np.ndarray,
    patch,
    stride,
    k: int,
    min_fraction: float,
    n_init: int,
    seed: int,
) -> np.ndarray:
    """Cluster map of one volume. ``encode(patches [n, prod(patch)] float32, coords [n, 3]) -> features [n, D]``;
    ``image`` the normalised volume (slice, row, col), ``foreground`` its voxel mask; a window token is encoded
    when at least ``min_fraction`` of its voxels are foreground (the preprocessing rule)."""
    from sklearn.cluster import KMeans

    from neurovfm.preprocess.foreground import token_mask

    ps = tuple(int(p) for p in patch)
    per_window = []
    for offset in window_offsets(ps, stride):
        view = window_view(image.shape, offset, ps)
        sub, fg = image[view], foreground[view]
        if min(sub.shape) == 0:
            continue
        tm = token_mask(fg, ps, min_fraction)
        coords = np.argwhere(tm)
        if len(coords) == 0:
            continue
        g = [n // p for n, p in zip(sub.shape, ps)]
        blocks = sub.reshape(g[0], ps[0], g[1], ps[1], g[2], ps[2]).transpose(0, 2, 4, 1, 3, 5)
        patches = blocks[tm].reshape(len(coords), -1).astype(np.float32)
        per_window.append((offset, coords, encode(patches, coords)))
    if not per_window or per_window[0][0] != (0, 0, 0):
        raise ValueError("the first window (offset 0) has no foreground token to fit k-means on")
    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(per_window[0][2])
    return vote_map(image.shape, [(o, c, km.predict(f)) for o, c, f in per_window], ps, k)
