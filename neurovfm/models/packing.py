"""Helpers for packed variable-length sequences.

A pack is a tensor [N, ...] holding B sequences back to back, described by ``cu_seqlens`` (int32, [B+1],
cumulative lengths starting at 0) and ``max_seqlen`` (the longest sequence). No padding anywhere.
"""

from __future__ import annotations

import torch
from torch import Tensor


def cu_seqlens_from_lengths(lengths, device=None) -> tuple[Tensor, int]:
    """Sequence lengths (list or tensor) -> (cu_seqlens int32 [B+1], max_seqlen)."""
    lengths = torch.as_tensor(lengths, dtype=torch.int32, device=device)
    if lengths.ndim != 1 or lengths.numel() == 0:
        raise ValueError("lengths must be a non-empty 1-D sequence")
    if bool((lengths < 0).any()):
        raise ValueError("lengths must be non-negative")
    cu = torch.zeros(lengths.numel() + 1, dtype=torch.int32, device=lengths.device)
    cu[1:] = torch.cumsum(lengths, 0)
    return cu, int(lengths.max())


def seqlens(cu_seqlens: Tensor) -> Tensor:
    """cu_seqlens [B+1] -> lengths [B] (int64)."""
    return (cu_seqlens[1:] - cu_seqlens[:-1]).long()


def pack(tensors: list[Tensor]) -> tuple[Tensor, Tensor, int]:
    """Concatenate per-sequence tensors [L_i, ...] -> (packed [sum L_i, ...], cu_seqlens, max_seqlen)."""
    cu, max_seqlen = cu_seqlens_from_lengths([t.shape[0] for t in tensors], device=tensors[0].device)
    return torch.cat(tensors, 0), cu, max_seqlen


def unpack(x: Tensor, cu_seqlens: Tensor) -> list[Tensor]:
    """Inverse of :func:`pack`: packed [N, ...] -> list of [L_i, ...] views."""
    return list(torch.split(x, seqlens(cu_seqlens).tolist(), dim=0))


def segment_ids(cu_seqlens: Tensor) -> Tensor:
    """Sequence index of every token: [N] int64 (token t belongs to sequence segment_ids[t])."""
    lengths = seqlens(cu_seqlens)
    return torch.repeat_interleave(torch.arange(lengths.numel(), device=cu_seqlens.device), lengths)


def block_diag_mask(cu_seqlens: Tensor) -> Tensor:
    """Boolean [N, N] mask, True where query and key belong to the same sequence."""
    seg = segment_ids(cu_seqlens)
    return seg[:, None] == seg[None, :]


def interleave(a: Tensor, cu_a: Tensor, b: Tensor, cu_b: Tensor) -> tuple[Tensor, Tensor, int, Tensor, Tensor]:
    """Merge two packs with the same batch order into one pack of per-sample [a_i, b_i].

    Returns (x, cu, max_seqlen, idx_a, idx_b): ``x[idx_a] == a`` and ``x[idx_b] == b``, so the caller can
    pull either part back out in its original order after processing ``x``. Differentiable in a and b.
    """
    if cu_a.numel() != cu_b.numel():
        raise ValueError(f"packs hold different numbers of samples: {cu_a.numel() - 1} vs {cu_b.numel() - 1}")
    if a.shape[0] != int(cu_a[-1]) or b.shape[0] != int(cu_b[-1]):
        raise ValueError("pack sizes disagree with their cu_seqlens")
    cu_a_l, cu_b_l = cu_a.long(), cu_b.long()
    seg_a, seg_b = segment_ids(cu_a), segment_ids(cu_b)
    # sample i starts at cu_a[i] + cu_b[i]; its a-part comes first, its b-part after all of a_i
    idx_a = torch.arange(a.shape[0], device=a.device) + cu_b_l[seg_a]
    idx_b = torch.arange(b.shape[0], device=b.device) + cu_a_l[seg_b + 1]
    order = torch.empty(a.shape[0] + b.shape[0], dtype=torch.long, device=a.device)
    order[idx_a] = torch.arange(a.shape[0], device=a.device)
    order[idx_b] = torch.arange(b.shape[0], device=a.device) + a.shape[0]
    x = torch.cat([a, b], 0)[order]
    cu = (cu_a_l + cu_b_l).to(torch.int32)
    max_seqlen = int(seqlens(cu).max())
    return x, cu, max_seqlen, idx_a, idx_b
