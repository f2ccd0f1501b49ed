"""The exported DINOv2 encoder as a slice encoder of the slice-wise feature extractor.

``encoder.pt`` (:func:`neurovfm.jepa.checkpoint.save_encoder`) holds the 2D ViT (the student's, or the teacher's
with ``pretrain.export: teacher``) and its model configuration. :func:`load_slice_encoder` rebuilds it (strict
loading) as a :class:`neurovfm.features.public2d.loaders.SliceEncoder`: normalised images ``[B, 3, S, S]`` -> the
class token after the final norm ``[B, D]``, one token per slice image in the feature store. Its preprocessing is
the training crops': ``image_size`` (the global crops' side, to which the extractor resizes the whole padded slice)
and the configured ``mean`` / ``std``; its slicing (which slices, images per forward pass) is the model's
``slices`` section, the keys of a public encoder's.
"""

from __future__ import annotations

from pathlib import Path

import torch

from neurovfm.dinov2.vit import build_vit
from neurovfm.jepa.objectives import SLICE_OBJECTIVE
from neurovfm.features.public2d.loaders import Preprocessing, SliceEncoder, load_state_strict

KIND = SLICE_OBJECTIVE
EMBEDDING = "class token after the final LayerNorm (DINOv2 backbone)"


def slice_spec(cfg: dict, name: str) -> dict:
    """The slicing settings of model ``name`` (``slice_stride``, ``max_slices``, ``foreground_only``,
    ``batch_size``), as a public encoder's section gives them to :func:`neurovfm.features.slicewise.extract`."""
    return dict(cfg["pretrain"]["models"][name]["slices"])


def preprocessing(model: dict) -> Preprocessing:
    d = model["dino"]
    return Preprocessing(int(d["image_size"]), tuple(d["mean"]), tuple(d["std"]), "config")


def load_slice_encoder(path: str | Path, name: str, device: str | torch.device = "cpu") -> SliceEncoder:
    """The frozen slice encoder of a DINOv2 ``encoder.pt``."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    if blob.get("format") != "neurovfm-encoder" or blob["model"].get("objective") != KIND:
        raise ValueError(f"{path} is not the encoder of a DINOv2 model (objective {KIND})")
    model = blob["model"]
    net = build_vit(model)
    load_state_strict(net, blob["state_dict"], path)
    info = {
        "kind": KIND,
        "label": name,
        "path": str(path),
        "weights": "pretrained",
        "random_seed": None,
        "architecture": {"encoder": model["encoder"], "patch": model["dino"]["patch"]},
        "embedding": EMBEDDING,
        "step": int(blob.get("step", 0)),
    }
    return SliceEncoder(net.float().eval(), KIND, net.embed_dim, preprocessing(model), info).to(device)
