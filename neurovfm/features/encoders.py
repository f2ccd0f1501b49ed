"""Which frozen encoder features come from.

``name`` is either a key of ``pretrain.models`` (its exported encoder: the student by default, as in the paper, or
the EMA teacher, ``pretrain.export``; ``results/{run}/pretrain/{name}/encoder.pt``, loaded strictly by
:func:`neurovfm.jepa.checkpoint.load_encoder`) or ``random``: the architecture of a pretrain model (by default the first name of ``pretrain.train``) with random weights drawn from a seed, the
usual lower bound for a frozen-feature probe. Either way the encoder is returned in eval mode with gradients off.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

RANDOM = "random"


def encoder_path(results_dir: str | Path, name: str) -> Path:
    """``results/{run}/pretrain/{name}/encoder.pt``."""
    return Path(results_dir) / "pretrain" / name / "encoder.pt"


def random_architecture(cfg: dict) -> str:
    """The pretrain model whose architecture the ``random`` encoder copies: the first of ``pretrain.train``."""
    train = cfg["pretrain"]["train"]
    if not train:
        raise ValueError("pretrain.train is empty: the random encoder has no architecture to copy")
    return train[0]


def freeze(encoder: torch.nn.Module) -> torch.nn.Module:
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder.eval()


def random_encoder(cfg: dict, seed: int, model: str | None = None) -> tuple[torch.nn.Module, dict]:
    """The architecture of ``pretrain.models[model]`` (default :func:`random_architecture`) with weights
    initialised from ``seed`` (the global RNG is left untouched)."""
    from neurovfm.jepa.build import build_models, model_config

    model = model or random_architecture(cfg)
    mcfg = {**model_config(cfg["pretrain"], model, cfg["preprocess"]["patch"]), "attn_backend": None}
    if mcfg.get("objective") == "dinov2":
        raise ValueError(
            f"the random encoder copies the 3D architecture of {model!r}, a 2D slice model (objective dinov2): "
            "name a volume model first in pretrain.train"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        encoder = build_models(mcfg, encoder_only=True)
    return freeze(encoder), {**mcfg, "random_seed": int(seed), "architecture_of": model}


def load_frozen(
    name: str,
    cfg: dict,
    encoder_pt: str | Path | None = None,
    seed: int | None = None,
    device: str | torch.device = "cpu",
) -> tuple[torch.nn.Module, dict]:
    """(frozen encoder on ``device``, model config) for a pretrain model name or ``random``."""
    if name == RANDOM:
        encoder, mcfg = random_encoder(cfg, cfg["seed"] if seed is None else seed)
        return encoder.to(device), mcfg
    if encoder_pt is None:
        raise ValueError(f"encoder {name!r} needs its encoder.pt")
    path = Path(encoder_pt)
    if not path.is_file():
        raise FileNotFoundError(f"no encoder file {path}: pretrain model {name!r} first")
    from neurovfm.jepa.checkpoint import load_encoder

    encoder, mcfg = load_encoder(path)
    return freeze(encoder).to(device), mcfg


def weights_digest(encoder: torch.nn.Module) -> str:
    """SHA-256 over the encoder's parameters and buffers (names, shapes, fp32 bytes): its identity in the
    fingerprints of feature chunks, so new weights never reuse old features."""
    h = hashlib.sha256()
    for k, v in sorted(encoder.state_dict().items()):
        t = v.detach().to("cpu", torch.float32).contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()
