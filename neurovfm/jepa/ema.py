"""Exponential moving average of the student encoder: the teacher."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, parameter by parameter; buffers copied.

    Both modules must have the same parameter names (the teacher is a copy of the student)."""
    t_params = dict(teacher.named_parameters())
    s_params = dict(student.named_parameters())
    if t_params.keys() != s_params.keys():
        raise ValueError("teacher and student have different parameters")
    names = list(t_params)
    t = [t_params[n] for n in names]
    s = [s_params[n].detach().to(t_params[n].dtype) for n in names]
    torch._foreach_mul_(t, momentum)
    torch._foreach_add_(t, s, alpha=1.0 - momentum)
    s_buffers = dict(student.named_buffers())
    for name, buf in teacher.named_buffers():
        buf.copy_(s_buffers[name])
