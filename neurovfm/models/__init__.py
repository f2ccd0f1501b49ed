"""3D ViT encoder and Vol-JEPA predictor over packed variable-length volumes."""

from .attention import Attention, available_backends, choose_backend, varlen_attention
from .block import Block
from .packing import block_diag_mask, cu_seqlens_from_lengths, interleave, pack, segment_ids, seqlens, unpack
from .patch_embed import PatchEmbed3D, patchify, unpatchify
from .pos_embed import sincos_3d
from .predictor import Predictor
from .vit import VIT_SIZES, VisionTransformer3D, build_encoder

__all__ = [
    "Attention",
    "Block",
    "PatchEmbed3D",
    "Predictor",
    "VIT_SIZES",
    "VisionTransformer3D",
    "available_backends",
    "block_diag_mask",
    "build_encoder",
    "choose_backend",
    "cu_seqlens_from_lengths",
    "interleave",
    "pack",
    "patchify",
    "segment_ids",
    "seqlens",
    "sincos_3d",
    "unpack",
    "unpatchify",
    "varlen_attention",
]
