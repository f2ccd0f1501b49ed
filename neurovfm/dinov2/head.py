"""The DINO head (DINOv2's ``DINOHead``): an MLP (``layers`` linear layers, GELU between them, the last to a
``bottleneck`` width), L2 normalisation, then a weight-normalised linear layer without bias onto ``prototypes``
outputs whose weight rows are unit vectors (weight norm with its gain fixed at 1): the logits are cosine
similarities between the normalised bottleneck and each prototype. The same head scores class tokens (DINO loss)
and masked patch tokens (iBOT loss): DINOv2's default shares one head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Prototypes(nn.Module):
    """``x @ (v / ||v||).T``: weight normalisation with the gain fixed at 1 (``last_layer`` of DINO)."""

    def __init__(self, dim: int, n: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, F.normalize(self.weight, dim=1))


class DINOHead(nn.Module):
    def __init__(self, in_dim: int, prototypes: int, hidden: int, bottleneck: int, layers: int = 3):
        super().__init__()
        dims = [in_dim] + [hidden] * (layers - 1) + [bottleneck]
        mlp = []
        for k, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            mlp.append(nn.Linear(a, b))
            if k < layers - 1:
                mlp.append(nn.GELU())
        self.mlp = nn.Sequential(*mlp)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = Prototypes(bottleneck, prototypes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``[..., in_dim]`` -> prototype logits ``[..., prototypes]`` (cosines, before the temperature)."""
        x = F.normalize(self.mlp(x), dim=-1, eps=1e-12)
        return self.last_layer(x)
