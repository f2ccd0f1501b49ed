"""EMA update, schedules and the loss."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from neurovfm.config import default_config
from neurovfm.jepa.ema import ema_update
from neurovfm.jepa.loss import embedding_spread, jepa_loss, teacher_targets
from neurovfm.jepa.schedules import Schedules, learning_rate, momentum


def test_ema_update_formula():
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    teacher = copy.deepcopy(student)
    for p in student.parameters():
        p.data.add_(torch.randn_like(p))
    student[1].running_mean.fill_(0.5)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    ema_update(teacher, student, 0.9)
    for name, p in teacher.named_parameters():
        expected = 0.9 * before[name] + 0.1 * dict(student.named_parameters())[name]
        assert torch.allclose(p, expected, atol=1e-7)
    assert torch.equal(teacher[1].running_mean, student[1].running_mean)
    ema_update(teacher, student, 1.0)  # momentum 1: the teacher no longer moves
    assert torch.allclose(teacher[0].weight, 0.9 * before["0.weight"] + 0.1 * student[0].weight)


def test_learning_rate_schedule():
    total, warm = 1000, 100
    lr = [learning_rate(s, total, 1e-4, 3.75e-4, 1e-6, warm) for s in range(total + 1)]
    assert lr[0] == pytest.approx(1e-4)
    assert lr[50] == pytest.approx(1e-4 + 0.5 * 2.75e-4)
    assert lr[warm] == pytest.approx(3.75e-4) and max(lr) == pytest.approx(3.75e-4)
    assert lr[total] == pytest.approx(1e-6)
    assert lr[550] == pytest.approx(1e-6 + 0.5 * (3.75e-4 - 1e-6))  # half-way through the cosine
    assert all(a >= b for a, b in zip(lr[warm:], lr[warm + 1 :]))


def test_schedules_from_config():
    cfg = default_config()
    s = Schedules(cfg["pretrain"], 200)
    assert s.warmup == 20
    first, last = s.at(0), s.at(200)
    # the ramp is stretched over 1.25 x 200 steps: below 1.0 at the last step, as the authors
    assert first["momentum"] == pytest.approx(0.994) and last["momentum"] == pytest.approx(0.994 + 0.006 / 1.25)
    assert last["momentum"] < 1.0
    assert s.at(125)["momentum"] == pytest.approx(0.997)
    assert first["wd"] == pytest.approx(0.05) and last["wd"] == pytest.approx(0.05)
    assert momentum(50, 100, 0.9, 1.0) == pytest.approx(0.95)
    assert momentum(100, 100, 0.9, 1.0, stretch=2.0) == pytest.approx(0.95)
    assert momentum(500, 100, 0.9, 1.0, stretch=2.0) == pytest.approx(1.0)  # capped at end


@pytest.mark.parametrize("rule, factor", [("none", 1.0), ("linear", 8 / 768), ("sqrt", (8 / 768) ** 0.5)])
def test_learning_rates_scale_with_batch(rule, factor):
    cfg = default_config()
    p = cfg["pretrain"]
    p["batch_size"] = 8
    p["optimizer"]["lr_scaling"] = {"rule": rule, "reference_batch": 768}
    s = Schedules(p, 100)
    assert s.lr_factor == pytest.approx(factor)
    assert s.at(s.warmup)["lr"] == pytest.approx(p["optimizer"]["lr"]["peak"] * factor)
    assert s.at(0)["lr"] == pytest.approx(p["optimizer"]["lr"]["start"] * factor)
    assert s.at(100)["lr"] == pytest.approx(p["optimizer"]["lr"]["final"] * factor)
    p["batch_size"] = 768  # at the reference batch every rule is the identity
    assert Schedules(p, 100).lr_factor == pytest.approx(1.0)
    p["optimizer"]["lr_scaling"]["rule"] = "cubic"
    with pytest.raises(ValueError, match="lr_scaling.rule"):
        Schedules(p, 100)


def test_variance_penalty_grows_as_predictions_collapse():
    from neurovfm.jepa.loss import variance_penalty

    g = torch.Generator().manual_seed(0)
    spread = torch.randn(500, 16, generator=g)
    assert float(variance_penalty(spread)) < 0.05  # unit spread: (almost) no penalty
    assert float(variance_penalty(0.1 * spread)) == pytest.approx(0.9, abs=0.02)
    assert float(variance_penalty(torch.ones(500, 16))) == pytest.approx(1.0 - 1e-2, abs=1e-3)  # collapsed
    x = (0.2 * spread).requires_grad_(True)
    variance_penalty(x).backward()
    assert x.grad.abs().sum() > 0  # it pushes the spread up


def test_loss_is_smooth_l1_to_normalised_teacher():
    torch.manual_seed(1)
    teacher = torch.randn(10, 8) * 3 + 2
    pred = torch.randn(10, 8)
    target = teacher_targets(teacher)
    manual = (teacher - teacher.mean(-1, keepdim=True)) / torch.sqrt(
        teacher.var(-1, unbiased=False, keepdim=True) + 1e-5
    )
    assert torch.allclose(target, manual, atol=1e-5)
    diff = (pred - manual).abs()
    expected = torch.where(diff < 1, 0.5 * diff**2, diff - 0.5).mean()
    assert jepa_loss(pred, target).item() == pytest.approx(expected.item(), rel=1e-5)
    assert jepa_loss(pred, target).item() == pytest.approx(F.smooth_l1_loss(pred, target).item())


def test_spread_alarm():
    assert embedding_spread(teacher_targets(torch.ones(5, 4) * torch.arange(4.0))).item() == pytest.approx(
        0.0, abs=1e-6
    )
    assert embedding_spread(teacher_targets(torch.randn(50, 16))).item() > 0.5
    assert math.isfinite(embedding_spread(torch.randn(3, 4)).item())


def test_effective_rank_sees_partial_collapse():
    from neurovfm.jepa.loss import effective_rank

    g = torch.Generator().manual_seed(0)
    iso = torch.randn(4000, 16, generator=g)
    assert effective_rank(iso).item() > 14.0
    # every token on one direction plus a little noise: rank near 1 although the spread after LayerNorm is not 0
    one = torch.randn(4000, 1, generator=g) * torch.randn(1, 16, generator=g) + 0.01 * torch.randn(
        4000, 16, generator=g
    )
    assert effective_rank(one).item() < 1.5
    assert embedding_spread(teacher_targets(one)).item() > 0.5
    # three equal directions: rank 3 (exp of the entropy of three equal singular values)
    basis = torch.linalg.qr(torch.randn(16, 3, generator=g)).Q.T
    three = torch.cat([torch.eye(3), -torch.eye(3)]).repeat(500, 1) @ basis
    assert effective_rank(three).item() == pytest.approx(3.0, rel=1e-3)
    # a strided subsample of many rows gives nearly the same value
    assert math.isnan(effective_rank(torch.full((5, 4), float("nan"))).item())
    assert effective_rank(iso.repeat(3, 1), max_rows=4000).item() == pytest.approx(effective_rank(iso).item(), rel=0.05)
