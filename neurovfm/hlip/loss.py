"""The HLIP objective: CLIP's symmetric InfoNCE, computed within each modality.

For the studies of one modality, ``logits = scale * image @ text.T`` (cosine similarities of normalised
embeddings); the loss is the mean of the cross-entropy of each image against the texts (its own text the
positive) and of each text against the images. CT studies are contrasted only with CT reports and MRI studies
only with MRI reports (the paper: "the CLIP objective was computed within each modality to prevent trivial
cross-modality discrimination"): a CT pair is never a negative of an MRI pair. The loss is the mean over the
modalities present with at least two studies (balanced batches give both the same weight).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def symmetric_infonce(image: Tensor, text: Tensor, scale: Tensor) -> Tensor:
    """CLIP loss of paired rows of ``image`` and ``text`` [n, E] (normalised), both directions averaged."""
    logits = scale * image.float() @ text.float().T
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def per_modality_clip(image: Tensor, text: Tensor, scale: Tensor, modality: Tensor) -> tuple[Tensor, dict]:
    """(loss, {modality code: (its loss, its image-to-text top-1 accuracy)}) of the batch's pairs; ``modality``
    [B] long codes. Pairs of different modalities never meet in a softmax."""
    losses, parts = [], {}
    for code in torch.unique(modality).tolist():
        rows = torch.nonzero(modality == code).flatten()
        if rows.numel() < 2:
            continue
        img, txt = image[rows], text[rows]
        loss = symmetric_infonce(img, txt, scale)
        with torch.no_grad():
            hits = (img @ txt.T).argmax(1) == torch.arange(rows.numel(), device=rows.device)
        losses.append(loss)
        parts[int(code)] = (loss.detach(), hits.float().mean())
    if not losses:
        raise ValueError("no modality has two studies in the batch: nothing to contrast")
    return torch.stack(losses).mean(), parts
