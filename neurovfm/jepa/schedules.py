"""Step -> value schedules of pretraining (pure functions of the step, so a resumed run follows the same
curve): learning rate with linear warm-up then half-cosine decay, weight decay and EMA momentum."""
from __future__ import annotations

import math


def cosine(start: float, end: float, t: float) -> float:
    """Half-cosine from ``start`` (t = 0) to ``end`` (t = 1)."""
    t = min(max(t, 0.0), 1.0)
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * t))


def learning_rate(step: int, total: int, start: float, peak: float, final: float, warmup: int) -> float:
    """Linear from ``start`` to ``peak`` over ``warmup`` steps, then half-cosine to ``final`` at ``total``."""
    if step < warmup:
        return start + (peak - start) * step / warmup
    return cosine(peak, final, (step - warmup) / max(total - warmup, 1))


def weight_decay(step: int, total: int, start: float, end: float) -> float:
    """Half-cosine from ``start`` to ``end`` over the run (constant when they are equal)."""
    return cosine(start, end, step / max(total, 1))


def momentum(step: int, total: int, start: float, end: float) -> float:
    """EMA momentum, linear from ``start`` to ``end`` over the run."""
    return start + (end - start) * min(step / max(total, 1), 1.0)


class Schedules:
    """The three schedules of a run, from ``pretrain`` config."""

    def __init__(self, pretrain: dict, total_steps: int):
        opt = pretrain["optimizer"]
        self.total = int(total_steps)
        self.lr_cfg = opt["lr"]
        self.wd_cfg = opt["weight_decay"]
        self.ema_cfg = pretrain["ema"]
        self.warmup = int(round(opt["warmup_fraction"] * self.total))

    def at(self, step: int) -> dict:
        lr = learning_rate(step, self.total, self.lr_cfg["start"], self.lr_cfg["peak"], self.lr_cfg["final"],
                           self.warmup)
        wd = weight_decay(step, self.total, self.wd_cfg["start"], self.wd_cfg["end"])
        m = momentum(step, self.total, self.ema_cfg["start"], self.ema_cfg["end"])
        return {"lr": lr, "wd": wd, "momentum": m}
