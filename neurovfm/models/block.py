"""Pre-LN transformer block on packed tokens, with per-volume stochastic depth."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .attention import Attention
from .packing import seqlens


class Mlp(nn.Module):
    """Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth per volume: in training, a whole volume's residual branch is dropped with prob p.

    Packed tensors have no batch axis, so the keep decision is drawn per sequence and spread to its tokens.
    """

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor, cu_seqlens: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        lengths = seqlens(cu_seqlens).to(x.device)
        keep = x.new_empty(lengths.numel()).bernoulli_(1.0 - self.p) / (1.0 - self.p)
        return x * keep.repeat_interleave(lengths)[:, None]


class Block(nn.Module):
    """x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x)))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        attn_backend: str | None = None,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_backend=attn_backend)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, cu_seqlens: Tensor, max_seqlen: int) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), cu_seqlens, max_seqlen), cu_seqlens)
        return x + self.drop_path(self.mlp(self.norm2(x)), cu_seqlens)


def init_weights(module: nn.Module, blocks: nn.ModuleList, std: float = 0.02) -> None:
    """ViT initialisation: truncated-normal Linear weights (std, cut at +-2 std), zero biases, unit LayerNorms,
    then the attention and MLP output projections of block l (1-based) divided by sqrt(2 l)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
    for layer_id, blk in enumerate(blocks, start=1):
        blk.attn.proj.weight.data.div_((2.0 * layer_id) ** 0.5)
        blk.mlp.fc2.weight.data.div_((2.0 * layer_id) ** 0.5)


def run_blocks(
    blocks: nn.ModuleList, x: Tensor, cu_seqlens: Tensor, max_seqlen: int, grad_checkpointing: bool = False
) -> Tensor:
    """Apply blocks in order; with checkpointing (and grad enabled) activations are recomputed in backward."""
    use_ckpt = grad_checkpointing and torch.is_grad_enabled()
    for blk in blocks:
        if use_ckpt:
            x = checkpoint(blk, x, cu_seqlens, max_seqlen, use_reentrant=False)
        else:
            x = blk(x, cu_seqlens, max_seqlen)
    return x
