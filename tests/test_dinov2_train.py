"""DINOv2 pretraining through the shared trainer on toy shards (CPU): the loss falls and the outputs are complete,
a killed-and-resumed run ends with the weights of an uninterrupted one, and the exported encoder goes through the
slice-wise feature extractor (shard job and merge, as the workflow runs them) into the feature store."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from neurovfm import pipeline
from neurovfm.dinov2.export import load_slice_encoder
from neurovfm.dinov2.train import STEP_COLUMNS
from neurovfm.features.encoders import random_encoder
from neurovfm.features.public2d.slices import slice_indices, to_images
from neurovfm.features.store import FeatureReader
from neurovfm.jepa import checkpoint as ckpt
from neurovfm.jepa.train import train
from neurovfm.store.dataset import VolumeDataset
from neurovfm.store.reader import ShardReader
from dinov2_fixtures import PATCH, config, write_train


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return write_train(tmp_path_factory.mktemp("shards"))


def data(index, cfg):
    return VolumeDataset(index, None, ct_window_probs=cfg["pretrain"]["ct_window_probs"], seed=0)


@pytest.fixture(scope="module")
def trained(index, tmp_path_factory):
    cfg = config(steps=16, checkpoint_every=16)
    out = tmp_path_factory.mktemp("dino")
    result = train(cfg, "d", data(index, cfg), out, threads=1)
    return cfg, out, result


def test_loss_falls_and_outputs_are_written(trained):
    _, out, result = trained
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics.columns) == STEP_COLUMNS and list(metrics["step"]) == list(range(16))
    assert metrics["loss"].tail(4).mean() < 0.9 * metrics["loss"].head(4).mean()
    assert result["last_loss"] < result["first_loss"]
    assert (metrics[["dino_global", "dino_local", "ibot"]] > 0).all().all()
    assert metrics["teacher_temp"].iloc[0] == pytest.approx(0.04) and metrics["teacher_temp"].iloc[-1] == 0.07
    assert (metrics["n_volumes"] == 4).all() and (metrics["n_images"] == 8).all()
    samples = pd.read_csv(out / "context_fractions.csv")  # one row per global crop: its unmasked share
    assert len(samples) == 16 * 16 and samples["context_fraction"].between(0.5 - 1e-9, 1).all()
    state = ckpt.load(out / ckpt.CHECKPOINT)
    assert set(state["modules"]) == {"student", "teacher", "targets"}
    blob = torch.load(out / ckpt.ENCODER, weights_only=False)
    student = {k[len("backbone.") :]: v for k, v in state["modules"]["student"].items() if k.startswith("backbone.")}
    assert blob["model"]["objective"] == "dinov2" and blob["state_dict"].keys() == student.keys()
    assert all(torch.equal(v, student[k]) for k, v in blob["state_dict"].items())
    with pytest.raises(ValueError, match="2D slice encoder"):  # not a 3D encoder
        ckpt.load_encoder(out / ckpt.ENCODER)
    with pytest.raises(ValueError, match="2D slice model"):  # nor an architecture for the random encoder
        random_encoder(trained[0], seed=0)


def test_resume_gives_identical_weights(index, tmp_path):
    cfg = config(steps=4)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    train(cfg, "d", data(index, cfg), straight, threads=1)
    assert train(cfg, "d", data(index, cfg), killed, threads=1, stop_after=3) == {"step": 3, "stopped": True}
    assert ckpt.load(killed / ckpt.CHECKPOINT)["step"] == 2
    torch.manual_seed(1234)  # the resumed process starts with other global RNG states
    train(cfg, "d", data(index, cfg), killed, threads=1)
    a, b = ckpt.load(straight / ckpt.CHECKPOINT), ckpt.load(killed / ckpt.CHECKPOINT)
    assert a["step"] == b["step"] == 4
    for name in a["modules"]:
        for key, value in a["modules"][name].items():
            assert torch.equal(value, b["modules"][name][key]), f"{name}.{key} differs after resume"
    pd.testing.assert_series_equal(
        pd.read_csv(straight / "metrics.csv")["loss"], pd.read_csv(killed / "metrics.csv")["loss"]
    )
    # other DINO settings are not resumed from this checkpoint; other slice-wise feature settings are
    train(cfg, "d", data(index, cfg), killed / "again", threads=1, stop_after=3)  # checkpoint at step 2
    other = config(steps=4, dino={"koleo_weight": 0.0})
    assert train(other, "d", data(index, cfg), killed / "again", threads=1, stop_after=1)["step"] == 1
    same = config(steps=4)
    same["pretrain"]["models"]["d"]["slices"]["max_slices"] = 2
    assert train(same, "d", data(index, cfg), killed / "again", threads=1, stop_after=1)["step"] == 3


def test_exported_encoder_through_the_slice_wise_features(trained, index, tmp_path):
    cfg, out, _ = trained
    cfg = {**cfg, "store": {**cfg["store"], "shards": {**cfg["store"]["shards"], "train": 1}}}  # the toy's one shard
    feats = tmp_path / "features" / "d"
    part = tmp_path / "part.json"
    pipeline.features_shard(cfg, "d", "train", 0, index, None, feats, part, encoder_pt=out / ckpt.ENCODER)
    pipeline.features_merge(cfg, "d", {"train": index}, None, feats, {"train": [part]})
    fr, sr = FeatureReader(feats / "train"), ShardReader(index)
    assert fr.index["token"] == "slice" and fr.index["label"] == "d" and fr.index["weights"] == "pretrained"
    assert fr.index["dim"] == 128 and fr.index["preprocessing"]["image_size"] == 32
    encoder = load_slice_encoder(out / ckpt.ENCODER, "d")
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    entries = [(e["series_id"], e["window"]) for e in fr.entries]
    assert len(entries) == sum(len(sr.channels(i)) for i in range(len(sr)))  # each CT window a separate entry
    for i, e in enumerate(fr.entries):
        v = sr.position(e["series_id"])
        want = slice_indices(16, np.asarray(sr.token_mask(v)), PATCH[0], 1, 3)  # slices: stride 1, at most 3
        assert e["n_tokens"] == len(want) == 3 and set(want) <= set(range(4, 12))
        np.testing.assert_array_equal(fr.coords(i)[:, 0], want)
        images = to_images(np.asarray(sr.channel(v, e["window"]))[want], 32, [0.2] * 3, [0.3] * 3)
        with torch.no_grad():
            direct = encoder(images)  # the student's class token, one per slice
        np.testing.assert_allclose(fr.features(i), direct.numpy().astype(np.float16), rtol=1e-2, atol=2e-3)
    header = json.loads((feats / "train" / "index.json").read_text())
    assert header["model"]["kind"] == "dinov2" and header["slices"]["max_slices"] == 3
