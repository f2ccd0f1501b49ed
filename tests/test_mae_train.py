"""VideoMAE pretraining through the shared trainer on CPU with toy volumes: the loss falls and the outputs are
complete, the exported encoder is a drop-in for Vol-JEPA's (same weights layout, same output shapes, loaded by
features), a killed-and-resumed run ends with the same weights as an uninterrupted one, a NaN loss stops it."""

import pandas as pd
import pytest
import torch

from neurovfm.config import default_config
from neurovfm.features.encoders import load_frozen
from neurovfm.jepa import checkpoint as ckpt
from neurovfm.jepa.toy import ToyVolumes
from neurovfm.jepa.train import NonFiniteLossError, train
from neurovfm.mae.train import STEP_COLUMNS
from mae_fixtures import TINY_MAE

MAE = TINY_MAE
JEPA = {"encoder": "tiny", "predictor_dim": 48, "predictor_depth": 1, "predictor_heads": 2}


def config(steps=6, models=None, **pretrain):
    return default_config(
        pretrain={
            "models": models or {"m": MAE, "j": JEPA},
            "train": ["j", "m"],
            "steps": steps,
            "batch_size": 4,
            "checkpoint_every": 2,
            "progress_every_s": 1000,
            **pretrain,
        }
    )


def data(**kw):
    return ToyVolumes(n=10, grid=(4, 5, 5), seed=0, **kw)


def test_loss_falls_and_outputs_are_written(tmp_path):
    # raw voxel targets: the normalised ones of the toy heads' flat interior are mostly noise (test_mae_objective)
    cfg = config(steps=30, checkpoint_every=30, models={"m": {**MAE, "norm_pix": False}})
    result = train(cfg, "m", ToyVolumes(n=12, grid=(4, 6, 6)), tmp_path, threads=1)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert list(metrics.columns) == STEP_COLUMNS and list(metrics["step"]) == list(range(30))
    assert metrics["loss"].tail(5).mean() < 0.9 * metrics["loss"].head(5).mean()
    assert result["last_loss"] < result["first_loss"]
    assert metrics[["lr", "wd", "grad_norm", "tokens_per_s"]].notna().all().all()
    assert (metrics["n_masked"] < metrics["n_tokens"]).all()
    assert metrics["context_fraction_MR"].between(0.1, 0.2).all()  # 15% of the foreground is visible
    samples = pd.read_csv(tmp_path / "context_fractions.csv")
    assert len(samples) == 30 * 4 and set(samples["config"]) == {"tube"}
    state = ckpt.load(tmp_path / ckpt.CHECKPOINT)
    assert set(state["modules"]) == {"encoder", "decoder"} and state["model"]["objective"] == "videomae"
    encoder, model = ckpt.load_encoder(tmp_path / "encoder.pt")
    assert model["objective"] == "videomae"
    assert all(torch.equal(v, state["modules"]["encoder"][k]) for k, v in encoder.state_dict().items())


def test_exported_encoder_is_a_drop_in_for_vol_jepas(tmp_path):
    cfg = config(steps=2)
    for name in ("m", "j"):
        train(cfg, name, data(), tmp_path / name, threads=1)
    mae, mae_cfg = load_frozen("m", cfg, tmp_path / "m" / "encoder.pt")
    jepa, _ = load_frozen("j", cfg, tmp_path / "j" / "encoder.pt")
    assert {k: v.shape for k, v in mae.state_dict().items()} == {k: v.shape for k, v in jepa.state_dict().items()}
    assert mae_cfg["encoder"] == "tiny" and not mae.training
    item = data()[0]
    from neurovfm.models.packing import cu_seqlens_from_lengths
    from neurovfm.models.patch_embed import patchify

    patches, coords = patchify(item["image"], cfg["preprocess"]["patch"])
    cu, max_len = cu_seqlens_from_lengths([patches.shape[0]])
    with torch.no_grad():
        a, b = mae(patches, coords, cu, max_len), jepa(patches, coords, cu, max_len)
    assert a.shape == b.shape == (patches.shape[0], 128)
    assert not torch.allclose(a, b)


def test_resume_gives_identical_weights(tmp_path):
    """Drop-path (global torch RNG) and a loader worker process make the data order and RNG states matter."""
    cfg = config(models={"m": {**MAE, "drop_path": 0.2}}, train=["m"], workers=1)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    train(cfg, "m", data(), straight, threads=1)
    stop = train(cfg, "m", data(), killed, threads=1, stop_after=3)  # checkpoint at 2, step 3 lost
    assert stop == {"step": 3, "stopped": True}
    assert ckpt.load(killed / ckpt.CHECKPOINT)["step"] == 2
    torch.manual_seed(1234)  # the resumed process starts with other global RNG states
    train(cfg, "m", data(), killed, threads=1)
    a, b = ckpt.load(straight / ckpt.CHECKPOINT), ckpt.load(killed / ckpt.CHECKPOINT)
    assert a["step"] == b["step"] == 6
    for name in a["modules"]:
        for key, value in a["modules"][name].items():
            assert torch.equal(value, b["modules"][name][key]), f"{name}.{key} differs after resume"
    opt_a, opt_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(opt_a[i]["exp_avg"], opt_b[i]["exp_avg"]) for i in opt_a)
    pd.testing.assert_series_equal(
        pd.read_csv(straight / "metrics.csv")["loss"], pd.read_csv(killed / "metrics.csv")["loss"]
    )
    # other MAE settings: not resumed from this checkpoint
    other = config(models={"m": {**MAE, "drop_path": 0.2, "mask_ratio": 0.75}}, train=["m"])
    train(cfg, "m", data(), killed, threads=1, stop_after=3)
    assert train(other, "m", data(), killed, threads=1, stop_after=1)["step"] == 1


def test_nan_loss_stops_with_the_step(tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step \d+"):
        train(config(steps=20, train=["m"]), "m", data(nan_at=7), tmp_path, threads=1)
