"""The training objective of a ``pretrain.models`` entry, read from its configuration alone (no torch: the table and
figure jobs ask it to name an encoder)."""

from __future__ import annotations

from neurovfm.config import ConfigError

OBJECTIVES = ("vjepa", "videomae", "hlip", "dinov2")
SLICE_OBJECTIVE = "dinov2"  # the one objective whose encoder is 2D, applied slice by slice


def objective(model: dict) -> str:
    """A ``pretrain.models`` entry's training objective: ``vjepa`` (Vol-JEPA, the default), ``videomae`` (the
    VideoMAE baseline, :mod:`neurovfm.mae`), ``hlip`` (the language-supervised baseline, :mod:`neurovfm.hlip`) or
    ``dinov2`` (the 2D baseline on slices, :mod:`neurovfm.dinov2`). The first three export the same 3D ViT; dinov2
    exports a 2D slice encoder (:mod:`neurovfm.dinov2.export`)."""
    kind = model.get("objective", "vjepa")
    if kind not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {OBJECTIVES}, got {kind!r}")
    return kind


def is_slice_model(cfg: dict, name: str) -> bool:
    """Whether ``name`` is a ``pretrain.models`` entry trained with ``objective: dinov2`` (features per slice)."""
    model = cfg["pretrain"]["models"].get(name)
    return model is not None and model.get("objective") == SLICE_OBJECTIVE
