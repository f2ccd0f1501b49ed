"""Student encoder, predictor and teacher from a model configuration (``pretrain.models.<name>``)."""

from __future__ import annotations

import copy

from torch import nn

from neurovfm.config import ConfigError
from neurovfm.models.predictor import Predictor
from neurovfm.models.vit import build_encoder


def model_config(pretrain: dict, name: str, patch) -> dict:
    """The named model's configuration, completed with what rebuilding it needs (saved in encoder.pt)."""
    models = pretrain["models"]
    if name not in models:
        raise ConfigError(f"pretrain.models has no model {name!r}; it has {sorted(models)}")
    return {"name": name, "patch_size": [int(p) for p in patch], "in_chans": 1, **models[name]}


def build_models(model: dict, encoder_only: bool = False):
    """-> encoder, or (student encoder, predictor, teacher) with the teacher a frozen copy of the student."""
    backend = model.get("attn_backend")  # None: chosen per call from the tensors (see models.attention)
    # encoder.pt files written before the position option existed hold the added code
    position = {"pos_embed": model.get("pos_embed", "add"), "pos_dim": int(model.get("pos_dim", 30))}
    encoder = build_encoder(
        model["encoder"],
        patch_size=tuple(model["patch_size"]),
        in_chans=model["in_chans"],
        drop_path_rate=float(model.get("drop_path", 0.0)),
        attn_backend=backend,
        **position,
    )
    if encoder_only:
        return encoder
    encoder.set_grad_checkpointing(bool(model.get("grad_checkpointing", False)))
    predictor = Predictor(
        encoder.embed_dim,
        int(model["predictor_dim"]),
        int(model["predictor_depth"]),
        int(model["predictor_heads"]),
        attn_backend=backend,
        **position,
    )
    predictor.set_grad_checkpointing(bool(model.get("grad_checkpointing", False)))
    teacher = copy.deepcopy(encoder)
    teacher.set_grad_checkpointing(False)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return encoder, predictor, teacher


class Student(nn.Module):
    """Encoder + predictor as one module, so DistributedDataParallel averages both in one hook."""

    def __init__(self, encoder: nn.Module, predictor: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.predictor = predictor

    def forward(self, patches, coords, ctx_idx, cu_ctx, max_ctx: int, tgt_idx, cu_tgt):
        """Encode the context tokens, predict the latents at the target tokens ([Nt, D])."""
        ctx_coords = coords[ctx_idx]
        latents = self.encoder(patches[ctx_idx], ctx_coords, cu_ctx, max_ctx)
        return self.predictor(latents, ctx_coords, cu_ctx, coords[tgt_idx], cu_tgt)
