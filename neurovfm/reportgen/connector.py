"""The connector (perceiver + two-layer MLP) and the placement of its visual tokens in the LLM input.

A prompt holds one image placeholder token per series. :func:`expand_placeholders` widens each placeholder
into ``latents`` slots (label -100); :func:`inputs_embeds` fills those slots, in order, with the projected
latents of the study's series and every other position with the LLM's word embeddings.
"""

from __future__ import annotations

import torch
from torch import nn

from .perceiver import PerceiverResampler

IGNORE = -100


class Connector(nn.Module):
    def __init__(self, dim_in: int, llm_dim: int, perceiver: dict):
        super().__init__()
        self.perceiver = PerceiverResampler(
            dim_in,
            int(perceiver["width"]),
            int(perceiver["latents"]),
            int(perceiver["depth"]),
            int(perceiver["heads"]),
            int(perceiver["ff_mult"]),
        )
        width = int(perceiver["width"])
        self.mlp = nn.Sequential(nn.Linear(width, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim))
        self.n_latents = int(perceiver["latents"])

    def forward(self, series: list[torch.Tensor]) -> torch.Tensor:
        """Series token tensors of one study -> [S * latents, llm_dim] (series after series)."""
        lat = self.mlp(self.perceiver(series))
        return lat.reshape(-1, lat.shape[-1])


def expand_placeholders(
    ids: list[int], labels: list[int], image_id: int, n_latents: int
) -> tuple[list[int], list[int], int]:
    """Each ``image_id`` in ``ids`` repeated ``n_latents`` times (labels ``IGNORE`` there); returns the new
    ids, labels and the number of placeholders found."""
    if len(ids) != len(labels):
        raise ValueError("ids and labels differ in length")
    out_ids, out_labels, n = [], [], 0
    for tok, lab in zip(ids, labels):
        if tok == image_id:
            out_ids.extend([image_id] * n_latents)
            out_labels.extend([IGNORE] * n_latents)
            n += 1
        else:
            out_ids.append(tok)
            out_labels.append(lab)
    return out_ids, out_labels, n


def inputs_embeds(embed: nn.Embedding, ids: torch.Tensor, image_id: int, visual: list[torch.Tensor]) -> torch.Tensor:
    """Word embeddings of ``ids`` [B, T] with the image slots of row b replaced by ``visual[b]`` [k_b, D]."""
    slots = ids == image_id
    text = embed(torch.where(slots, torch.zeros_like(ids), ids))
    out = text.clone()
    for b, vis in enumerate(visual):
        n = int(slots[b].sum())
        if n != vis.shape[0]:
            raise ValueError(f"row {b}: {n} image slots but {vis.shape[0]} visual tokens")
        out[b, slots[b]] = vis.to(out.dtype)
    return out
