"""Training checkpoints (everything needed to continue bit-for-bit) and the exported encoder.

Both are written atomically (temporary sibling, then rename): a job killed while saving leaves the previous
checkpoint intact. Weights load with ``strict=True``: a checkpoint that does not match the model is an error.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from neurovfm.utils.atomic import atomic_path

CHECKPOINT = "checkpoint.pt"
ENCODER = "encoder.pt"


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(path: str | Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load(path: str | Path) -> dict:
    # our own file: it holds numpy RNG state and plain Python objects besides tensors
    return torch.load(path, map_location="cpu", weights_only=False)


def training_state(step: int, modules: dict, optimizer, ranks: list[dict], extra: dict) -> dict:
    """``modules``: name -> nn.Module (unwrapped); ``ranks``: per process {position, rng}."""
    return {
        "step": int(step),
        "modules": {k: m.state_dict() for k, m in modules.items()},
        "optimizer": optimizer.state_dict(),
        "ranks": ranks,
        "world_size": len(ranks),
        **extra,
    }


def restore(state: dict, modules: dict, optimizer) -> None:
    for name, module in modules.items():
        module.load_state_dict(state["modules"][name], strict=True)
    optimizer.load_state_dict(state["optimizer"])


def save_encoder(path: str | Path, encoder: torch.nn.Module, model_config: dict, step: int) -> None:
    """An encoder's weights (the student or the EMA teacher, ``pretrain.export``) with the configuration that
    rebuilds it."""
    weights = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    save(
        path,
        {
            "format": "neurovfm-encoder",
            "version": 1,
            "model": dict(model_config),
            "step": int(step),
            "state_dict": weights,
        },
    )


def load_encoder(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the encoder saved by :func:`save_encoder` (strict loading); returns (encoder, model config)."""
    from neurovfm.jepa.build import build_models  # noqa: PLC0415  (models import torch-heavy code)

    blob = torch.load(path, map_location="cpu", weights_only=False)
    if blob.get("format") != "neurovfm-encoder":
        raise ValueError(f"{path} is not an encoder file written by neurovfm")
    if blob["model"].get("objective") == "dinov2":
        raise ValueError(
            f"{path} is a 2D slice encoder (objective dinov2): the slice-wise features load it "
            "(neurovfm.dinov2.export); analyses of 3D tokens need a volume encoder"
        )
    # the training machine's attention back end may not exist here: choose it from the tensors
    encoder = build_models({**blob["model"], "attn_backend": None}, encoder_only=True)
    encoder.load_state_dict(blob["state_dict"], strict=True)
    return encoder.to(device).eval(), blob["model"]
