"""Perceiver resampler: a variable number of frozen tokens of one series -> a fixed number of latents.

Each layer: pre-LayerNorm cross-attention from the learned queries to the series' tokens, then a pre-LN
feed-forward (``ff_mult`` x wider), both residual; a final LayerNorm (the authors' layout). Series of different
lengths are padded into one batch with a key padding mask, so a series' latents do not depend on what it is
batched with.
"""

from __future__ import annotations

import torch
from torch import nn


class PerceiverLayer(nn.Module):
    def __init__(self, width: int, heads: int, ff_mult: int):
        super().__init__()
        self.norm_q = nn.LayerNorm(width)
        self.norm_kv = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm_ff = nn.LayerNorm(width)
        self.ff = nn.Sequential(nn.Linear(width, ff_mult * width), nn.GELU(), nn.Linear(ff_mult * width, width))

    def forward(self, latents: torch.Tensor, tokens: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(tokens)
        latents = latents + self.attn(self.norm_q(latents), kv, kv, key_padding_mask=pad, need_weights=False)[0]
        return latents + self.ff(self.norm_ff(latents))


class PerceiverResampler(nn.Module):
    def __init__(self, dim_in: int, width: int, latents: int, depth: int, heads: int, ff_mult: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, width) if dim_in != width else nn.Identity()
        self.queries = nn.Parameter(torch.randn(latents, width) * 0.02)
        self.layers = nn.ModuleList(PerceiverLayer(width, heads, ff_mult) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.n_latents, self.width = latents, width

    @staticmethod
    def pad(series: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """[S, max_len, dim] zero-padded tokens and the [S, max_len] padding mask (True: padding)."""
        if not series:
            raise ValueError("a study needs at least one series")
        lengths = [int(s.shape[0]) for s in series]
        if min(lengths) < 1:
            raise ValueError("a series without tokens cannot be resampled")
        batch = torch.nn.utils.rnn.pad_sequence(list(series), batch_first=True)
        pad = (
            torch.arange(batch.shape[1], device=batch.device)[None, :]
            >= torch.tensor(lengths, device=batch.device)[:, None]
        )
        return batch, pad

    def forward(self, series: list[torch.Tensor]) -> torch.Tensor:
        """``series``: list of [n_i, dim_in] token tensors -> [S, latents, width]."""
        tokens, pad = self.pad(series)
        tokens = self.proj(tokens.to(self.queries.dtype))
        latents = self.queries.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        for layer in self.layers:
            latents = layer(latents, tokens, pad)
        return self.norm(latents)
