"""Study-level attentive probes (multiple instance learning) over packed bags of frozen tokens.

A bag is every foreground token of every volume of one study. Bags are packed back to back, ``tokens [N, D]``
with ``cu_seqlens`` int32 [B+1] (one segment per study), as in the rest of :mod:`neurovfm.models`. All
per-study reductions are segment operations (scatter amax, index_add), with no Python loop over studies.

* :class:`ClassifyThenAggregate` -- per-token class logits from an MLP, class-specific gated attention, per
  class a softmax over the study's tokens, study logit = sum(attention x token logit), then a learnable
  per-class scale and bias.
* :class:`GatedAttentionPool` -- gated AB-MIL aggregate-then-classify: one gated attention score per token,
  softmax per study, pooled embedding, LayerNorm, MLP to class logits.
* :func:`build_probe` -- construct either by name.

Both heads start with :class:`Standardize` (per-dimension statistics of the training tokens; identity by default),
so that the optimiser sees unit-scale inputs whatever the encoder's output scale.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .packing import segment_ids

PROBE_KINDS = ("classify_then_aggregate", "gated_attention")


def _check_pack(tokens: Tensor, cu_seqlens: Tensor) -> None:
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [N, D], got shape {tuple(tokens.shape)}")
    if cu_seqlens.ndim != 1 or cu_seqlens.numel() < 2:
        raise ValueError("cu_seqlens must be a 1-D tensor [B+1] with B >= 1")
    if int(cu_seqlens[0]) != 0 or int(cu_seqlens[-1]) != tokens.shape[0]:
        raise ValueError(
            f"cu_seqlens must start at 0 and end at N={tokens.shape[0]}, "
            f"got {int(cu_seqlens[0])}..{int(cu_seqlens[-1])}"
        )


def segment_softmax(scores: Tensor, cu_seqlens: Tensor) -> Tensor:
    """Softmax of ``scores [N, K]`` over the tokens of each segment, independently per column.

    Numerically stable (per-segment, per-column max subtracted). Each column sums to 1 within each non-empty
    segment.
    """
    seg = segment_ids(cu_seqlens)
    n_seg = cu_seqlens.numel() - 1
    k = scores.shape[1]
    idx = seg[:, None].expand(-1, k)
    mx = torch.full((n_seg, k), float("-inf"), dtype=scores.dtype, device=scores.device)
    mx = mx.scatter_reduce(0, idx, scores.detach(), reduce="amax", include_self=True)
    e = torch.exp(scores - mx[seg])
    den = torch.zeros((n_seg, k), dtype=scores.dtype, device=scores.device).index_add(0, seg, e)
    return e / den[seg]


def segment_sum(x: Tensor, cu_seqlens: Tensor) -> Tensor:
    """Sum ``x [N, ...]`` over each segment -> [B, ...] (zeros for an empty segment)."""
    seg = segment_ids(cu_seqlens)
    out = torch.zeros((cu_seqlens.numel() - 1, *x.shape[1:]), dtype=x.dtype, device=x.device)
    return out.index_add(0, seg, x)


class Standardize(nn.Module):
    """Fixed per-dimension standardisation of frozen features, ``(x - mean) / std``, with the statistics of the
    training tokens (set by :meth:`set_stats`; identity until then). Buffers, so they travel with the weights."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def set_stats(self, mean, std, eps: float = 1e-6) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.std.copy_(torch.as_tensor(std, dtype=self.std.dtype).clamp_min(eps))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class GatedAttentionScores(nn.Module):
    """Gated attention network W(tanh(V x) * sigmoid(U x)) -> ``n_out`` scores per token (Ilse et al. 2018)."""

    def __init__(self, dim: int, attn_hidden: int = 512, n_out: int = 1, dropout: float = 0.0):
        super().__init__()
        self.V = nn.Linear(dim, attn_hidden)
        self.U = nn.Linear(dim, attn_hidden)
        self.W = nn.Linear(attn_hidden, n_out)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.W(self.drop(torch.tanh(self.V(x)) * torch.sigmoid(self.U(x))))


class ClassifyThenAggregate(nn.Module):
    """Classify-then-aggregate MIL head with class-specific gated attention.

    ``forward(tokens [N, D], cu_seqlens [B+1]) -> (logits [B, K], attention [N, K])``; ``attention[:, k]``
    sums to 1 over each study's tokens.
    """

    def __init__(self, dim: int, n_classes: int, hidden: int = 384, attn_hidden: int = 512, dropout: float = 0.0):
        super().__init__()
        self.dim, self.n_classes = dim, n_classes
        self.input_norm = Standardize(dim)
        self.classifier = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes)
        )
        self.attention = GatedAttentionScores(dim, attn_hidden, n_classes, dropout)
        self.scale = nn.Parameter(torch.ones(n_classes))
        self.bias = nn.Parameter(torch.zeros(n_classes))

    def token_logits(self, tokens: Tensor) -> Tensor:
        """Per-token class logits [N, K]."""
        return self.classifier(tokens)

    def attention_scores(self, tokens: Tensor) -> Tensor:
        """Unnormalised class-specific attention scores [N, K]."""
        return self.attention(tokens)

    def forward(self, tokens: Tensor, cu_seqlens: Tensor) -> tuple[Tensor, Tensor]:
        _check_pack(tokens, cu_seqlens)
        tokens = self.input_norm(tokens)
        alpha = segment_softmax(self.attention_scores(tokens), cu_seqlens)  # [N, K]
        bag = segment_sum(alpha * self.token_logits(tokens), cu_seqlens)  # [B, K]
        return bag * self.scale + self.bias, alpha

    def study_logits(self, tokens: Tensor, cu_seqlens: Tensor) -> Tensor:
        """The logits of :meth:`forward` alone, for prediction: each study's softmax over its own (contiguous) rows,
        without the segment gathers that build the [N, K] attention matrix (0.9x the time of ``forward`` on the CPU:
        ``benchmarks/probe_predict.py``; equal to ``forward``'s up to float rounding, tested)."""
        _check_pack(tokens, cu_seqlens)
        tokens = self.input_norm(tokens)
        scores, logits = self.attention_scores(tokens), self.token_logits(tokens)
        bounds = cu_seqlens.tolist()
        bag = torch.stack(
            [(torch.softmax(scores[a:b], 0) * logits[a:b]).sum(0) for a, b in zip(bounds[:-1], bounds[1:])]
        )
        return bag * self.scale + self.bias


class GatedAttentionPool(nn.Module):
    """Gated AB-MIL aggregate-then-classify head.

    ``forward(tokens [N, D], cu_seqlens [B+1]) -> (logits [B, K], attention [N, 1])``; attention sums to 1 over
    each study's tokens.
    """

    def __init__(self, dim: int, n_classes: int, hidden: int = 384, attn_hidden: int = 512, dropout: float = 0.0):
        super().__init__()
        self.dim, self.n_classes = dim, n_classes
        self.input_norm = Standardize(dim)
        self.attention = GatedAttentionScores(dim, attn_hidden, 1, dropout)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    def attention_scores(self, tokens: Tensor) -> Tensor:
        """Unnormalised attention scores [N, 1]."""
        return self.attention(tokens)

    def pool(self, tokens: Tensor, cu_seqlens: Tensor) -> tuple[Tensor, Tensor]:
        """(pooled study embeddings [B, D] before the LayerNorm, attention [N, 1])."""
        _check_pack(tokens, cu_seqlens)
        tokens = self.input_norm(tokens)
        alpha = segment_softmax(self.attention_scores(tokens), cu_seqlens)  # [N, 1]
        return segment_sum(alpha * tokens, cu_seqlens), alpha

    def forward(self, tokens: Tensor, cu_seqlens: Tensor) -> tuple[Tensor, Tensor]:
        pooled, alpha = self.pool(tokens, cu_seqlens)
        return self.head(self.norm(pooled)), alpha

    def study_logits(self, tokens: Tensor, cu_seqlens: Tensor) -> Tensor:
        """The logits of :meth:`forward` alone (its attention is one column: nothing to save)."""
        return self(tokens, cu_seqlens)[0]


def build_probe(kind: str, dim: int, n_classes: int, **kw) -> nn.Module:
    """Build a study-level probe head: ``kind`` in ``PROBE_KINDS``; ``kw`` go to the constructor."""
    if kind == "classify_then_aggregate":
        return ClassifyThenAggregate(dim, n_classes, **kw)
    if kind == "gated_attention":
        return GatedAttentionPool(dim, n_classes, **kw)
    raise ValueError(f"unknown probe kind {kind!r}; choose one of {', '.join(PROBE_KINDS)}")


__all__ = [
    "Standardize",
    "ClassifyThenAggregate",
    "GatedAttentionPool",
    "GatedAttentionScores",
    "PROBE_KINDS",
    "build_probe",
    "segment_softmax",
    "segment_sum",
]
