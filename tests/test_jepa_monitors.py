"""Pretraining monitors: each must move the way it claims when the property it watches is present (positive
control) and stay put when it is not."""

import pandas as pd
import pytest
import torch

from neurovfm.jepa import monitors
from neurovfm.models.pos_embed import sincos_3d


def cu(*lengths):
    return torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)


def test_within_volume_rank_sees_a_volume_collapse_that_batch_rank_misses():
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(60, 32, generator=g)
    # within each volume the tokens vary along one direction only (a different one per volume, so the batch as
    # a whole still spans two)
    collapsed = torch.cat(
        [
            torch.randn(30, 1, generator=g) * torch.randn(1, 32, generator=g)
            + torch.randn(1, 32, generator=g)
            + 1e-4 * torch.randn(30, 32, generator=g)
            for _ in range(2)
        ]
    )
    ok = monitors.within_volume_rank(spread, cu(30, 30), ["MR", "CT"])
    bad = monitors.within_volume_rank(collapsed, cu(30, 30), ["MR", "CT"])
    assert ok["target_erank_MR"] > 15 and ok["target_erank_CT"] > 15
    assert bad["target_erank_MR"] < 3 and bad["target_erank_CT"] < 3
    only_mr = monitors.within_volume_rank(spread, cu(30, 30), ["MR", "MR"])
    assert only_mr["target_erank_CT"] != only_mr["target_erank_CT"]  # NaN without a CT volume


def test_position_floor_is_low_when_targets_follow_position_and_high_when_not():
    g = torch.Generator().manual_seed(1)
    coords = torch.randint(0, 12, (400, 3), generator=g)
    lengths = cu(100, 100, 100, 100)
    from_position = sincos_3d(coords, 48) @ torch.randn(48, 16, generator=g)
    noise = torch.randn(400, 16, generator=g)
    easy = monitors.position_floor(noise, from_position, coords, lengths, 48, alpha=1e-3)
    hard = monitors.position_floor(noise, noise, coords, lengths, 48, alpha=1.0)
    assert easy["floor_loss"] < 0.01  # a positions-only predictor explains these targets
    assert hard["floor_loss"] > 0.3  # and not targets that ignore position
    assert hard["pred_loss_heldout"] == pytest.approx(0.0)  # the "predictor" here returns the targets


def test_self_content_reads_what_the_features_keep():
    g = torch.Generator().manual_seed(2)
    patches = torch.rand(300, 64, generator=g) * torch.rand(300, 1, generator=g)
    stats = torch.stack([patches.mean(1), patches.std(1)], 1)
    keeps = torch.cat([stats @ torch.randn(2, 20, generator=g), 0.01 * torch.randn(300, 20, generator=g)], 1)
    drops = torch.randn(300, 40, generator=g)
    lengths = cu(60, 60, 60, 60, 60)
    assert monitors.self_content(keeps, patches, lengths, alpha=1e-3) > 0.95
    assert monitors.self_content(drops, patches, lengths, alpha=1.0) < 0.1


def test_teacher_drift_is_zero_at_start_and_grows():
    net = torch.nn.Linear(8, 8)
    drift = monitors.TeacherDrift(net)
    assert drift(net) == 0.0
    with torch.no_grad():
        net.weight.mul_(0.5)
    assert 0.1 < drift(net) < 1.0


def test_training_logs_monitors_without_changing_the_weights(tmp_path):
    """Monitor rows appear every ``monitor.every`` steps, and the trained weights equal a run without them."""
    from neurovfm.config import default_config
    from neurovfm.jepa import checkpoint as ckpt
    from neurovfm.jepa.toy import ToyVolumes
    from neurovfm.jepa.train import train

    tiny = {"encoder": "tiny", "predictor_dim": 48, "predictor_depth": 1, "predictor_heads": 4}

    def run(out, every):
        cfg = default_config(
            pretrain={
                "models": {"t": tiny},
                "train": ["t"],
                "steps": 6,
                "batch_size": 4,
                "checkpoint_every": 6,
                "progress_every_s": 1000,
                "monitor": {"every": every, "ridge_alpha": 1.0, "position_dim": 48},
            }
        )
        train(cfg, "t", ToyVolumes(n=8, grid=(4, 5, 5), seed=0), out, threads=1)
        return ckpt.load(out / ckpt.CHECKPOINT)["modules"]

    with_m, without = run(tmp_path / "a", 2), run(tmp_path / "b", 0)
    for part in with_m:
        for k in with_m[part]:
            assert torch.equal(with_m[part][k], without[part][k]), (part, k)
    rows = pd.read_csv(tmp_path / "a" / "metrics.csv")
    logged = rows.dropna(subset=["teacher_drift"])
    assert list(logged["step"]) == [0, 2, 4, 5]
    assert (logged["teacher_drift"].diff().dropna() > 0).all()
    assert logged[["floor_loss", "pred_loss_heldout", "self_content_r2"]].notna().all().all()
    assert pd.read_csv(tmp_path / "b" / "metrics.csv")["teacher_drift"].isna().all()
