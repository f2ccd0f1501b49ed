"""Encoder + decoder of the VideoMAE baseline, built from a ``pretrain.models`` entry with ``objective: videomae``.

The encoder is the Vol-JEPA encoder (:func:`neurovfm.jepa.build.build_models`, same sizes and position code), so
its ``encoder.pt`` loads and runs in features and probes exactly as Vol-JEPA's does.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from neurovfm.jepa.build import build_models
from neurovfm.mae.decoder import MAEDecoder


class MaskedAutoencoder(nn.Module):
    """One module, so DistributedDataParallel averages encoder and decoder gradients in one hook."""

    def __init__(self, encoder: nn.Module, decoder: MAEDecoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, patches, coords, vis_idx, vis_cu, max_vis: int, masked_idx, masked_cu) -> Tensor:
        """Encode the visible tokens (rows ``vis_idx`` of the pack), reconstruct the masked ones ([Nm, P])."""
        vis_coords = coords[vis_idx]
        latents = self.encoder(patches[vis_idx], vis_coords, vis_cu, max_vis)
        return self.decoder(latents, vis_coords, vis_cu, coords[masked_idx], masked_cu)


def build_mae(model: dict) -> MaskedAutoencoder:
    """Encoder (drawn first from the global RNG) and decoder of ``model`` (see :func:`model_config`)."""
    encoder = build_models(model, encoder_only=True)
    encoder.set_grad_checkpointing(bool(model.get("grad_checkpointing", False)))
    decoder = MAEDecoder(
        encoder.embed_dim,
        int(model["decoder_dim"]),
        int(model["decoder_depth"]),
        int(model["decoder_heads"]),
        patch_dim=int(model["in_chans"]) * math.prod(int(p) for p in model["patch_size"]),
        attn_backend=model.get("attn_backend"),
        pos_embed=model.get("pos_embed", "add"),
        pos_dim=int(model.get("pos_dim", 30)),
    )
    decoder.set_grad_checkpointing(bool(model.get("grad_checkpointing", False)))
    return MaskedAutoencoder(encoder, decoder)
