"""The VideoMAE decoder: a light transformer that reconstructs the pixels of the masked tokens.

Per volume, the sequence [visible_i, masked_i] is built from the encoder's latents of the visible tokens, projected
to the decoder width, and one shared learnable mask token at every masked position, each joined to the fixed
sine-cosine code of its (z, y, x) coordinates (added or concatenated, as in the encoder: ``pos_embed``). Volumes
are packed and attend only within themselves; the outputs at the masked positions go through a LayerNorm and a
linear head to the ``patch_dim`` voxel values of a token (VideoMAE: depth 4, about half the encoder's width).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neurovfm.models.block import Block, init_weights, run_blocks
from neurovfm.models.packing import interleave
from neurovfm.models.pos_embed import content_width, with_position


class MAEDecoder(nn.Module):
    def __init__(
        self,
        embed_dim: int,
        decoder_dim: int,
        depth: int,
        num_heads: int,
        patch_dim: int,
        mlp_ratio: float = 4.0,
        attn_backend: str | None = None,
        pos_embed: str = "add",
        pos_dim: int = 30,
    ):
        super().__init__()
        self.pos_embed, self.pos_dim = pos_embed, int(pos_dim)
        self.grad_checkpointing = False
        content = content_width(decoder_dim, pos_embed, self.pos_dim)
        self.decoder_embed = nn.Linear(embed_dim, content)
        self.blocks = nn.ModuleList(
            Block(decoder_dim, num_heads, mlp_ratio, qkv_bias=True, attn_backend=attn_backend) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.head = nn.Linear(decoder_dim, patch_dim)
        init_weights(self, self.blocks)
        self.mask_token = nn.Parameter(torch.zeros(1, content))
        nn.init.trunc_normal_(self.mask_token, std=0.02, a=-0.04, b=0.04)  # as VideoMAE's decoder

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def forward(
        self, visible: Tensor, vis_coords: Tensor, vis_cu: Tensor, masked_coords: Tensor, masked_cu: Tensor
    ) -> Tensor:
        """visible [Nv, D] latents (packed by vis_cu), masked_coords [Nm, 3] (packed by masked_cu, same volume
        order) -> reconstructed voxels of the masked tokens [Nm, patch_dim]."""
        if visible.shape[0] != vis_coords.shape[0] or masked_coords.ndim != 2 or masked_coords.shape[1] != 3:
            raise ValueError(
                f"visible {tuple(visible.shape)} / vis_coords {tuple(vis_coords.shape)} / masked_coords "
                f"{tuple(masked_coords.shape)} do not fit"
            )
        content = self.decoder_embed(visible)
        x_vis = with_position(content, vis_coords, self.pos_embed, self.pos_dim)
        mask = self.mask_token.to(content.dtype).expand(masked_coords.shape[0], -1)
        x_masked = with_position(mask, masked_coords, self.pos_embed, self.pos_dim)
        x, cu, max_seqlen, _, idx_masked = interleave(x_vis, vis_cu, x_masked, masked_cu)
        x = run_blocks(self.blocks, x, cu, max_seqlen, self.grad_checkpointing)
        return self.head(self.norm(x[idx_masked]))
