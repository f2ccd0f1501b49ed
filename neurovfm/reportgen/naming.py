"""Which report generators a run compares (configuration alone, no torch: the figure jobs ask it)."""

from __future__ import annotations


def encoders(cfg: dict) -> list[str]:
    return list(cfg["reportgen"]["encoders"] or cfg["pretrain"]["train"][:1])


def main_model(cfg: dict) -> str:
    """The model of the main comparison: the first encoder at the largest training-set size."""
    return f"{encoders(cfg)[0]}/n{max(int(s) for s in cfg['reportgen']['sizes'])}"
