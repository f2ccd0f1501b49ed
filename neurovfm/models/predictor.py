"""Vol-JEPA predictor: predicts the encoder's latents at target positions from the context latents.

Per sample, the sequence [context_i, target_i] is built from the projected context latents joined to their
position encoding and, at every target, one shared learnable mask token (zero-initialised) joined to the target's
position encoding (added, or concatenated as in the encoder: ``pos_embed``). Samples are packed together and
attend only within themselves; the outputs at the target positions are projected back to the encoder width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .block import Block, init_weights, run_blocks
from .packing import interleave
from .pos_embed import content_width, with_position


class Predictor(nn.Module):
    def __init__(
        self,
        embed_dim: int,
        predictor_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        attn_backend: str | None = None,
        drop_path_rate: float = 0.0,
        grad_checkpointing: bool = False,
        pos_embed: str = "add",
        pos_dim: int = 30,
    ):
        super().__init__()
        self.embed_dim = embed_dim
        self.predictor_dim = predictor_dim
        self.grad_checkpointing = grad_checkpointing
        self.pos_embed, self.pos_dim = pos_embed, int(pos_dim)
        content = content_width(predictor_dim, pos_embed, self.pos_dim)
        self.predictor_embed = nn.Linear(embed_dim, content)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(predictor_dim, num_heads, mlp_ratio, qkv_bias=True, drop_path=r, attn_backend=attn_backend)
            for r in rates
        )
        self.norm = nn.LayerNorm(predictor_dim, eps=1e-6)
        self.predictor_proj = nn.Linear(predictor_dim, embed_dim)
        init_weights(self, self.blocks)
        self.mask_token = nn.Parameter(torch.zeros(1, content))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def forward(self, ctx: Tensor, ctx_coords: Tensor, ctx_cu: Tensor, tgt_coords: Tensor, tgt_cu: Tensor) -> Tensor:
        """ctx [Nc, D] (packed by ctx_cu), tgt_coords [Nt, 3] (packed by tgt_cu, same sample order) -> [Nt, D]."""
        if ctx.shape[0] != ctx_coords.shape[0] or tgt_coords.shape[1] != 3:
            raise ValueError(
                f"ctx {tuple(ctx.shape)} / ctx_coords {tuple(ctx_coords.shape)} / tgt_coords "
                f"{tuple(tgt_coords.shape)} do not fit"
            )
        content = self.predictor_embed(ctx)
        x_ctx = with_position(content, ctx_coords, self.pos_embed, self.pos_dim)
        mask = self.mask_token.to(content.dtype).expand(tgt_coords.shape[0], -1)
        x_tgt = with_position(mask, tgt_coords, self.pos_embed, self.pos_dim)
        x, cu, max_seqlen, _, idx_tgt = interleave(x_ctx, ctx_cu, x_tgt, tgt_cu)
        x = run_blocks(self.blocks, x, cu, max_seqlen, self.grad_checkpointing)
        return self.predictor_proj(self.norm(x[idx_tgt]))
