"""The HLIP model: the Vol-JEPA ViT encoder, a study-level attention pool, a text encoder, two projections into
one embedding space and a learnable temperature.

Image side: every volume of a study is encoded by the same ViT as Vol-JEPA's (:func:`neurovfm.jepa.build.
build_models`; its ``encoder.pt`` is a drop-in for Vol-JEPA's in features and probes), each volume attending
within itself; the study embedding is an *attention pool* over the tokens of all of the study's volumes: learned
queries (one per head) score every token, a softmax over the study's tokens weighs their values. Attention rather
than the mean because a finding is a few tokens among thousands: a mean would dilute a small lesion into the
study's anatomy, while the pool can learn to look at it (the same reasoning as the study-level attentive probe
that evaluates every encoder). HLIP's own study token comes from its hierarchical ViT, which ours is not.
Text side: :class:`neurovfm.hlip.text.TextEncoder`. Both embeddings are projected (no bias) and L2-normalised;
the logits are their cosine similarities times exp(logit scale), the scale starting at 1 / ``temperature`` and
capped at 100 as CLIP's.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from neurovfm.hlip.text import TextEncoder, text_side
from neurovfm.jepa.build import build_models
from neurovfm.models.probes import segment_softmax, segment_sum

MAX_LOGIT_SCALE = math.log(100.0)


class StudyAttentionPool(nn.Module):
    """tokens [N, D] packed by ``study_cu`` [B+1] -> study embeddings [B, D] (multi-head attention pooling)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"pool width {dim} is not divisible by its {num_heads} heads")
        self.num_heads, self.head_dim = int(num_heads), dim // int(num_heads)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.query = nn.Parameter(torch.zeros(self.num_heads, self.head_dim))
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.query, std=0.02)

    def attention(self, tokens: Tensor, study_cu: Tensor) -> Tensor:
        """Per head, each token's weight within its study [N, heads] (sums to 1 over a study's tokens)."""
        keys = self.key(self.norm(tokens)).view(-1, self.num_heads, self.head_dim)
        scores = (keys * self.query).sum(-1) / math.sqrt(self.head_dim)
        return segment_softmax(scores.float(), study_cu)

    def forward(self, tokens: Tensor, study_cu: Tensor) -> Tensor:
        alpha = self.attention(tokens, study_cu)
        values = self.value(self.norm(tokens)).view(-1, self.num_heads, self.head_dim).float()
        pooled = segment_sum(alpha.unsqueeze(-1) * values, study_cu)  # [B, heads, head_dim]
        return self.out(pooled.reshape(pooled.shape[0], -1).to(tokens.dtype))


class LogitScale(nn.Module):
    """The learnable inverse temperature, stored as its log (a module so checkpoints hold it by name)."""

    def __init__(self, temperature: float):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / float(temperature))))

    def forward(self) -> Tensor:
        return self.log_scale.clamp(max=MAX_LOGIT_SCALE).exp()


class HLIP(nn.Module):
    """Image and text towers as one module, so DistributedDataParallel averages all gradients in one hook."""

    def __init__(self, encoder: nn.Module, text: TextEncoder, embed_dim: int, pool_heads: int, temperature: float):
        super().__init__()
        self.encoder = encoder
        self.pool = StudyAttentionPool(encoder.embed_dim, pool_heads)
        self.image_proj = nn.Linear(encoder.embed_dim, embed_dim, bias=False)
        self.text = text
        self.text_proj = nn.Linear(text.width, embed_dim, bias=False)
        self.logit_scale = LogitScale(temperature)
        for proj in (self.image_proj, self.text_proj):
            nn.init.normal_(proj.weight, std=proj.in_features**-0.5)

    def encode_image(self, patches: Tensor, coords: Tensor, cu: Tensor, max_len: int, study_cu: Tensor) -> Tensor:
        """L2-normalised study embeddings [B, E] from the packed tokens of every volume."""
        tokens = self.encoder(patches, coords, cu, max_len)
        return F.normalize(self.image_proj(self.pool(tokens, study_cu)).float(), dim=-1)

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """L2-normalised text embeddings [B, E]."""
        return F.normalize(self.text_proj(self.text(input_ids, attention_mask)).float(), dim=-1)

    def forward(self, patches, coords, cu, max_len: int, study_cu, input_ids, attention_mask):
        """(image embeddings [B, E], text embeddings [B, E], logit scale)."""
        image = self.encode_image(patches, coords, cu, max_len, study_cu)
        return image, self.encode_text(input_ids, attention_mask), self.logit_scale()


def build_hlip(model: dict, texts: dict[str, str]) -> tuple[HLIP, object]:
    """(HLIP model, tokenizer) of a ``pretrain.models`` entry with ``objective: hlip``: its ViT encoder (drawn first
    from the global RNG, as every objective's), then the text side of its ``text`` settings (a tokenizer fitted on
    ``texts`` and a new BERT, or a local folder's), then the pool, projections and temperature."""
    encoder = build_models(model, encoder_only=True)
    encoder.set_grad_checkpointing(bool(model.get("grad_checkpointing", False)))
    tokenizer, transformer = text_side(model["text"], texts)
    hlip = HLIP(
        encoder,
        TextEncoder(transformer),
        embed_dim=int(model["embed_dim"]),
        pool_heads=int(model["pool_heads"]),
        temperature=float(model["temperature"]),
    )
    return hlip, tokenizer
