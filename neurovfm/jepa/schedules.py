"""Step -> value schedules of pretraining (pure functions of the step, so a resumed run follows the same
curve): learning rate with linear warm-up then half-cosine decay, weight decay and EMA momentum.

Two settings scale the recipe to the run it is in rather than to the authors' 510K-step, batch-768 run:

* ``ema.stretch``: the momentum ramp from ``start`` to ``end`` is spread over ``stretch x steps``, so it is still
  below ``end`` at the last step (the authors and V-JEPA use 1.25: the teacher never freezes).
* ``optimizer.lr_scaling``: the learning rates (start, peak, final) were set for ``reference_batch`` volumes per
  step; a run with another batch multiplies them by 1 (``none``), ``batch / reference`` (``linear``, Goyal et al.
  2017, for SGD) or ``sqrt(batch / reference)`` (``sqrt``, the rule that keeps Adam's update noise constant;
  Malladi et al. 2022).
"""

from __future__ import annotations

import math

LR_SCALING_RULES = ("none", "linear", "sqrt")


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


def momentum(step: int, total: int, start: float, end: float, stretch: float = 1.0) -> float:
    """EMA momentum, linear from ``start`` at step 0 to ``end`` at step ``stretch x total``."""
    return start + (end - start) * min(step / max(stretch * total, 1), 1.0)


def lr_factor(rule: str, batch_size: int, reference_batch: int) -> float:
    """Multiplier of the configured learning rates for ``batch_size`` volumes per step."""
    if rule not in LR_SCALING_RULES:
        raise ValueError(f"pretrain.optimizer.lr_scaling.rule must be one of {LR_SCALING_RULES}, got {rule!r}")
    ratio = float(batch_size) / float(reference_batch)
    return {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[rule]


class Schedules:
    """The three schedules of a run, from ``pretrain`` config."""

    def __init__(self, pretrain: dict, total_steps: int):
        opt = pretrain["optimizer"]
        self.total = int(total_steps)
        scaling = opt["lr_scaling"]
        self.lr_factor = lr_factor(scaling["rule"], int(pretrain["batch_size"]), int(scaling["reference_batch"]))
        self.lr_cfg = {k: float(v) * self.lr_factor for k, v in opt["lr"].items()}
        self.wd_cfg = opt["weight_decay"]
        self.ema_cfg = pretrain["ema"]
        self.warmup = int(round(opt["warmup_fraction"] * self.total))

    def at(self, step: int) -> dict:
        lr = learning_rate(
            step, self.total, self.lr_cfg["start"], self.lr_cfg["peak"], self.lr_cfg["final"], self.warmup
        )
        wd = weight_decay(step, self.total, self.wd_cfg["start"], self.wd_cfg["end"])
        m = momentum(step, self.total, self.ema_cfg["start"], self.ema_cfg["end"], float(self.ema_cfg["stretch"]))
        return {"lr": lr, "wd": wd, "momentum": m}
