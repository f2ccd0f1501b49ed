"""3D Vision Transformer encoder over packed, variable-length volumes (the NeuroVFM backbone).

Tokens are 4 x 16 x 16 patches, linearly embedded, joined to a fixed 3D sine-cosine encoding of their integer
(z, y, x) grid coordinates: added (``pos_embed="add"``, full width) or concatenated (``"concat"``, a
``pos_dim``-wide code beside a narrower patch projection, as the authors' code). No class token. Each volume in
a pack attends only to itself, so any
subset of a volume's tokens (a Vol-JEPA context, the foreground of a whole volume) can be encoded as is.

Sizes (the paper's scaling study compares ViT-Small, -Medium and -Base without stating widths; we use the
standard ones; "tiny" is ours, for CPU demos and tests, and "micro" the demo's second size of the scaling grid,
Fig. 2b). Parameter counts for one input channel:

| size   | width | depth | heads | head dim | parameters |
|--------|-------|-------|-------|----------|------------|
| micro  | 64    | 4     | 2     | 32       | 0.27 M     |
| tiny   | 128   | 4     | 4     | 32       | 0.92 M     |
| small  | 384   | 12    | 6     | 64       | 21.7 M     |
| medium | 512   | 12    | 8     | 64       | 38.4 M     |
| base   | 768   | 12    | 12    | 64       | 85.8 M     |
"""

from __future__ import annotations

from torch import Tensor, nn

from .block import Block, init_weights, run_blocks
from .patch_embed import PatchEmbed3D
from .pos_embed import content_width, with_position

VIT_SIZES = {
    "micro": dict(embed_dim=64, depth=4, num_heads=2),  # the demo's second size of the scaling grid (Fig. 2b)
    "tiny": dict(embed_dim=128, depth=4, num_heads=4),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "medium": dict(embed_dim=512, depth=12, num_heads=8),
    "base": dict(embed_dim=768, depth=12, num_heads=12),
}


class VisionTransformer3D(nn.Module):
    """patches [N, C*pz*py*px] + coords [N, 3] (packed by cu_seqlens) -> token features [N, D]."""

    def __init__(
        self,
        patch_size=(4, 16, 16),
        in_chans: int = 1,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        grad_checkpointing: bool = False,
        attn_backend: str | None = None,
        pos_embed: str = "add",
        pos_dim: int = 30,
    ):
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.embed_dim = embed_dim
        self.pos_embed, self.pos_dim = pos_embed, int(pos_dim)
        self.num_heads = num_heads
        self.depth = depth
        self.grad_checkpointing = grad_checkpointing
        self.patch_embed = PatchEmbed3D(patch_size, in_chans, content_width(embed_dim, pos_embed, self.pos_dim))
        # stochastic depth grows linearly with depth, as in timm / I-JEPA
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_path=r, attn_backend=attn_backend) for r in rates
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        init_weights(self, self.blocks)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def embed(self, patches: Tensor, coords: Tensor) -> Tensor:
        """Token embedding plus position encoding, before the blocks."""
        return with_position(self.patch_embed(patches), coords, self.pos_embed, self.pos_dim)

    def forward(self, patches: Tensor, coords: Tensor, cu_seqlens: Tensor, max_seqlen: int) -> Tensor:
        if coords.shape[0] != patches.shape[0] or int(cu_seqlens[-1]) != patches.shape[0]:
            raise ValueError(
                f"{patches.shape[0]} patches, {coords.shape[0]} coords and cu_seqlens total "
                f"{int(cu_seqlens[-1])} must agree"
            )
        x = self.embed(patches, coords)
        x = run_blocks(self.blocks, x, cu_seqlens, max_seqlen, self.grad_checkpointing)
        return self.norm(x)


def build_encoder(size: str, **overrides) -> VisionTransformer3D:
    """Encoder of a named size (see VIT_SIZES); keyword overrides win over the size's settings."""
    if size not in VIT_SIZES:
        raise ValueError(f"unknown encoder size {size!r}; choose one of {sorted(VIT_SIZES)}")
    return VisionTransformer3D(**{**VIT_SIZES[size], **overrides})
