"""BiomedCLIP's image tower: a plain ViT with the parameter names of timm's ``VisionTransformer`` (``trunk.*``) and
open_clip's linear projection head (``head.proj``), so an open_clip checkpoint's ``visual.*`` tensors load strictly.

Why not timm itself: timm imports torchvision, and no torchvision wheel matches the pinned CPU build of torch (the
import fails on its compiled operators). The architecture is small enough to write out: patch embedding (a
convolution with stride = patch), a class token, learned absolute position embeddings over class token + patches,
pre-norm blocks (LayerNorm, multi-head self-attention with a fused ``qkv`` projection, LayerNorm, GELU MLP), a final
LayerNorm. The image embedding is the class token after the final norm (timm's ``token`` pooling, which open_clip
keeps when ``timm_pool`` is empty), then ``head.proj`` (no bias): what open_clip's ``encode_image`` returns.

:func:`vision_spec` reads these sizes from an open_clip ``vision_cfg``: ``timm_model_name``
(``vit_{tiny,small,base,large}_patch{P}_{S}``) gives the defaults of that timm model, ``timm_model_kwargs`` may
override ``embed_dim``, ``depth``, ``num_heads``, ``patch_size`` and ``mlp_ratio``; anything else is refused.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

# timm's ViT families: (width, depth, heads); every one with mlp_ratio 4, qkv bias, LayerNorm eps 1e-6
TIMM_VIT_SIZES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12), "large": (1024, 24, 16)}
TIMM_NAME = re.compile(r"^vit_(?P<size>tiny|small|base|large)_patch(?P<patch>\d+)_(?P<img>\d+)$")
KWARG_KEYS = ("embed_dim", "depth", "num_heads", "patch_size", "mlp_ratio")
LN_EPS = 1e-6


def vision_spec(vision_cfg: dict, embed_dim: int) -> dict:
    """The tower's sizes from an open_clip ``vision_cfg`` and the CLIP ``embed_dim`` (projection width)."""
    name = vision_cfg.get("timm_model_name")
    m = TIMM_NAME.match(str(name))
    if m is None:
        raise ValueError(
            f"vision tower {name!r} is not supported: expected a timm ViT name vit_{{tiny,small,base,large}}_patch<P>_<S>"
        )
    if vision_cfg.get("timm_pool", "") not in ("", "token"):
        raise ValueError(f"vision tower pooling {vision_cfg['timm_pool']!r} is not supported (class token only)")
    if vision_cfg.get("timm_proj", "linear") != "linear":
        raise ValueError(f"vision tower projection {vision_cfg['timm_proj']!r} is not supported (linear only)")
    width, depth, heads = TIMM_VIT_SIZES[m["size"]]
    spec = {
        "embed_dim": width,
        "depth": depth,
        "num_heads": heads,
        "patch_size": int(m["patch"]),
        "mlp_ratio": 4.0,
        "image_size": int(vision_cfg.get("image_size", m["img"])),
        "proj_dim": int(embed_dim),
        "proj_bias": bool(vision_cfg.get("timm_proj_bias", False)),
    }
    kwargs = dict(vision_cfg.get("timm_model_kwargs") or {})
    unknown = sorted(set(kwargs) - set(KWARG_KEYS))
    if unknown:
        raise ValueError(f"timm_model_kwargs {unknown} are not supported; allowed: {', '.join(KWARG_KEYS)}")
    spec.update(kwargs)
    if spec["embed_dim"] % spec["num_heads"]:
        raise ValueError(f"embed_dim {spec['embed_dim']} is not a multiple of num_heads {spec['num_heads']}")
    if spec["image_size"] % spec["patch_size"]:
        raise ValueError(f"image_size {spec['image_size']} is not a multiple of patch_size {spec['patch_size']}")
    return spec


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(head width), as timm
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int, in_chans: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, patches, dim], row-major over the patch grid


class Trunk(nn.Module):
    """timm ``VisionTransformer`` layout (class token, no registers, no pre-norm, no layer scale)."""

    def __init__(self, embed_dim: int, depth: int, num_heads: int, patch_size: int, mlp_ratio: float, image_size: int):
        super().__init__()
        n = (image_size // patch_size) ** 2
        self.image_size = image_size
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"images of {tuple(x.shape[-2:])} pixels; this tower takes {self.image_size}")
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 0]


class OpenClipViT(nn.Module):
    """``trunk`` + ``head.proj``: images ``[B, 3, S, S]`` -> image embeddings ``[B, proj_dim]``."""

    def __init__(self, spec: dict):
        super().__init__()
        self.spec = dict(spec)
        self.trunk = Trunk(
            spec["embed_dim"],
            spec["depth"],
            spec["num_heads"],
            spec["patch_size"],
            spec["mlp_ratio"],
            spec["image_size"],
        )
        self.head = nn.Sequential(
            OrderedDict(
                drop=nn.Dropout(0.0),
                proj=nn.Linear(spec["embed_dim"], spec["proj_dim"], bias=spec["proj_bias"]),
            )
        )
        self.embed_dim = int(spec["proj_dim"])

    def init_random(self) -> OpenClipViT:
        """timm-like initialisation (truncated normal 0.02 for linear layers and position embeddings)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.trunk.pos_embed, std=0.02)
        nn.init.normal_(self.trunk.cls_token, std=1e-6)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(images))
