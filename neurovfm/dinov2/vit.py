"""The 2D ViT of the DINOv2 baseline: the slice encoder of :mod:`neurovfm.features.public2d.vit` (timm's layout:
patch embedding, class token, learned position embeddings, pre-norm blocks, final LayerNorm) with what DINOv2's
training adds:

- position embeddings interpolated (bicubic, over the patch grid) for crops of another size than ``image_size``
  (the local crops);
- a learnable ``mask_token`` that replaces the patch embedding of iBOT-masked patches (before the position code is
  added, as DINOv2 does);
- :meth:`DinoViT.forward_features`: the class token and the patch tokens after the final norm.

Its width, depth and heads are those of the Vol-JEPA encoder size (``encoder: tiny`` ... ``base``,
:data:`neurovfm.models.vit.VIT_SIZES`), so the 2D and 3D baselines compare at equal model size. ``forward`` returns
the class token after the final norm: one embedding per slice image, what the slice-wise features store.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neurovfm.features.public2d.vit import Trunk
from neurovfm.models.vit import VIT_SIZES


class DinoViT(Trunk):
    def __init__(self, embed_dim: int, depth: int, num_heads: int, patch_size: int, image_size: int, in_chans: int = 3):
        super().__init__(embed_dim, depth, num_heads, patch_size, 4.0, image_size)
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of the patch size {patch_size}")
        if in_chans != 3:
            self.patch_embed.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.patch_size, self.embed_dim = int(patch_size), int(embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
        self.init_weights()

    def init_weights(self) -> None:
        """timm / DINOv2: truncated normal 0.02 for linear layers and position embeddings, zero biases, class token
        normal 1e-6, mask token zero."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        nn.init.zeros_(self.mask_token)

    def position(self, side: int) -> torch.Tensor:
        """Position embeddings [1, 1 + (side / patch)^2, D] for square images of ``side`` pixels."""
        n = side // self.patch_size
        full = self.image_size // self.patch_size
        if n == full:
            return self.pos_embed
        cls, grid = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        grid = grid.reshape(1, full, full, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(n, n), mode="bicubic", align_corners=False)
        return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, n * n, -1)], dim=1)

    def forward_features(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> dict:
        """Images ``[B, C, S, S]`` (S a multiple of the patch) and optional bool ``masks`` ``[B, (S/patch)^2]`` (True:
        the patch is replaced by the mask token) -> {"cls": [B, D], "patches": [B, N, D]} after the final norm."""
        side = images.shape[-1]
        if images.shape[-2] != side or side % self.patch_size:
            raise ValueError(f"images of {tuple(images.shape[-2:])} pixels: square, a multiple of {self.patch_size}")
        x = self.patch_embed(images)
        if masks is not None:
            x = torch.where(masks.unsqueeze(-1), self.mask_token.to(x.dtype).unsqueeze(0), x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.position(side)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return {"cls": x[:, 0], "patches": x[:, 1:]}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The class token after the final norm: one embedding per image ``[B, D]``."""
        return self.forward_features(images)["cls"]


def build_vit(model: dict) -> DinoViT:
    """The 2D ViT of a ``pretrain.models`` entry with ``objective: dinov2`` (``encoder`` size, ``dino`` settings)."""
    size = VIT_SIZES[model["encoder"]]
    dino = model["dino"]
    return DinoViT(size["embed_dim"], size["depth"], size["num_heads"], int(dino["patch"]), int(dino["image_size"]))
