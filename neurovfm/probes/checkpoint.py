"""The trained probe on disk: weights plus everything needed to rebuild and apply it (kind, sizes, class names,
hyperparameters, validation thresholds, encoder and CT windows). Written atomically; loaded strictly."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from neurovfm.jepa.checkpoint import load, save
from neurovfm.models.probes import build_probe

FORMAT = "neurovfm-probe"
VERSION = 1


def save_probe(path: str | Path, model: nn.Module, meta: dict) -> None:
    """``meta`` must name ``kind``, ``dim``, ``class_names``, ``hidden``, ``attn_hidden``, ``hparams``."""
    for key in ("kind", "dim", "class_names", "hidden", "attn_hidden", "hparams"):
        if key not in meta:
            raise KeyError(f"probe metadata lacks {key!r}")
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save(path, {"format": FORMAT, "version": VERSION, **meta, "state_dict": weights})


def load_probe(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild a probe saved by :func:`save_probe`; returns (model in eval mode, metadata)."""
    blob = load(path)
    if blob.get("format") != FORMAT or blob.get("version") != VERSION:
        raise ValueError(f"{path} is not a {FORMAT} v{VERSION} file")
    model = build_probe(
        blob["kind"],
        int(blob["dim"]),
        len(blob["class_names"]),
        hidden=int(blob["hidden"]),
        attn_hidden=int(blob["attn_hidden"]),
        dropout=float(blob["hparams"].get("dropout", 0.0)),
    )
    model.load_state_dict(blob["state_dict"], strict=True)
    meta = {k: v for k, v in blob.items() if k != "state_dict"}
    return model.eval(), meta
