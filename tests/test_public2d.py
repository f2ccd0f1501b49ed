"""Public 2D encoders applied slice-wise (DINOv3, BiomedCLIP): strict loading from their real folder layouts, the
image preprocessing, slice selection, the feature store they write and the probe's bags over it, and the DAG that
plans features -> probe for them. Tiny architectures (2 layers, width 32, 32-pixel images) with random weights."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from neurovfm import pipeline
from neurovfm.config import load_config, validate
from neurovfm.features.public2d.loaders import PublicEncoderError, load_public
from neurovfm.features.public2d.slices import slice_indices, to_images
from neurovfm.features.public2d.vit import Attention
from neurovfm.features.store import FeatureReader
from neurovfm.probes.bags import BagSet
from neurovfm.store.index import token_shape
from neurovfm.store.reader import ShardReader

from shard_factory import TOY_LAYOUTS as LAYOUTS, write_toy_split

ROOT = Path(__file__).resolve().parent.parent
PATCH = (2, 4, 4)
SIZE = 32
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
TINY = {
    "dinov3": {
        "kind": "dinov3",
        "architecture": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "patch_size": 8,
            "num_register_tokens": 2,
            "image_size": SIZE,
        },
    },
    "biomedclip": {
        "kind": "biomedclip",
        "architecture": {
            "embed_dim": 16,
            "vision_cfg": {
                "timm_model_name": "vit_base_patch16_224",
                "timm_model_kwargs": {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 8},
                "timm_pool": "",
                "timm_proj": "linear",
                "image_size": SIZE,
            },
        },
    },
}
COMMON = {
    "path": None,
    "image_size": SIZE,
    "mean": MEAN,
    "std": STD,
    "batch_size": 5,
    "slice_stride": 1,
    "max_slices": 4,
    "foreground_only": True,
}
# (series, study, modality, shape [slice, row, col], foreground token slabs)
VOLUMES = [
    ("s1", "A", "CT", (8, 16, 12), [1, 2, 3]),
    ("s2", "A", "MR", (6, 12, 16), [0, 1, 2]),
    ("s3", "B", "MR", (10, 8, 8), [2]),
    ("s4", "C", "CT", (4, 8, 8), []),
]


def spec(kind: str, **kw) -> dict:
    return {**COMMON, **copy.deepcopy(TINY[kind]), **kw}


def images(n=3, seed=0) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def embed(enc, x) -> torch.Tensor:
    with torch.no_grad():
        return enc(x)


# ----------------------------------------------------------------------------------------------------- loaders
def _save_dinov3(enc, folder: Path, preprocessor: bool = True) -> Path:
    enc.net.save_pretrained(str(folder))
    if preprocessor:
        pre = {"image_mean": [0.1, 0.2, 0.3], "image_std": [0.5, 0.6, 0.7], "size": {"height": SIZE, "width": SIZE}}
        (folder / "preprocessor_config.json").write_text(json.dumps(pre))
    return folder


def _save_open_clip(enc, folder: Path, weights: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    arch = TINY["biomedclip"]["architecture"]
    config = {"model_cfg": {**arch, "text_cfg": {"context_length": 8}}, "preprocess_cfg": {"mean": MEAN, "std": STD}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    state = {f"visual.{k}": v.clone().contiguous() for k, v in enc.net.state_dict().items()}
    state["text.proj.weight"] = torch.zeros(4, 4)  # the text tower is in the checkpoint but not used
    state["logit_scale"] = torch.ones(())
    if weights.endswith(".safetensors"):
        save_file(state, str(folder / weights))
    else:
        torch.save(state, folder / weights)
    return folder


def test_dinov3_folder_loads_the_same_model(tmp_path, monkeypatch):
    random = load_public("d", spec("dinov3"), seed=1)
    assert random.info["weights"] == "random" and random.info["label"] == "d (random weights)"
    folder = _save_dinov3(random, tmp_path / "dinov3")
    monkeypatch.setenv("P4_MODELS", str(tmp_path))  # ${VAR} expanded, as in profiles/armis2/paper.yaml
    loaded = load_public("d", spec("dinov3", path="${P4_MODELS}/dinov3"), seed=99)
    x = images()
    torch.testing.assert_close(embed(loaded, x), embed(random, x), rtol=0, atol=0)
    assert embed(loaded, x).shape == (3, 32)
    assert loaded.info["weights"] == "pretrained" and loaded.info["label"] == "d"
    assert loaded.preprocessing.source == "model folder" and loaded.preprocessing.mean == (0.1, 0.2, 0.3)
    (folder / "preprocessor_config.json").unlink()  # without it: the section's values
    assert load_public("d", spec("dinov3", path=str(folder)), seed=0).preprocessing.mean == tuple(MEAN)


def test_random_weights_follow_the_seed():
    x = images()
    for kind in ("dinov3", "biomedclip"):
        a, b, c = (load_public("e", spec(kind), seed=s) for s in (4, 4, 5))
        torch.testing.assert_close(embed(a, x), embed(b, x), rtol=0, atol=0)
        assert not torch.allclose(embed(a, x), embed(c, x))


@pytest.mark.parametrize("change, needle", [("drop", "missing"), ("add", "unexpected")])
def test_dinov3_checkpoint_with_a_wrong_key_is_refused(tmp_path, change, needle):
    folder = _save_dinov3(load_public("d", spec("dinov3"), seed=1), tmp_path / "dinov3")
    state = load_file(str(folder / "model.safetensors"))
    if change == "drop":
        state.pop("norm.weight")
    else:
        state["extra.weight"] = torch.zeros(2)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(PublicEncoderError, match=needle):
        load_public("d", spec("dinov3", path=str(folder)), seed=1)


def test_dinov3_folder_of_another_model_is_refused(tmp_path):
    folder = _save_dinov3(load_public("d", spec("dinov3"), seed=1), tmp_path / "dinov3")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "model_type": "vit"}))
    with pytest.raises(PublicEncoderError, match="model_type"):
        load_public("d", spec("dinov3", path=str(folder)), seed=1)
    with pytest.raises(PublicEncoderError, match="does not exist"):
        load_public("d", spec("dinov3", path=str(tmp_path / "nowhere")), seed=1)


@pytest.mark.parametrize("weights", ["open_clip_pytorch_model.bin", "open_clip_model.safetensors"])
def test_biomedclip_folder_loads_the_same_tower(tmp_path, weights):
    random = load_public("b", spec("biomedclip"), seed=2)
    folder = _save_open_clip(random, tmp_path / "biomedclip", weights)
    loaded = load_public("b", spec("biomedclip", path=str(folder), mean=[0, 0, 0], std=[1, 1, 1]), seed=0)
    x = images()
    torch.testing.assert_close(embed(loaded, x), embed(random, x), rtol=0, atol=0)
    assert embed(loaded, x).shape == (3, 16)  # the projected image embedding (embed_dim)
    assert loaded.preprocessing.mean == tuple(MEAN) and loaded.preprocessing.source == "model folder"


@pytest.mark.parametrize(
    "change, needle",
    [("drop", "missing.*trunk.norm.weight"), ("add", "unexpected.*trunk.extra"), ("shape", "shape of head.proj")],
)
def test_biomedclip_checkpoint_with_a_wrong_key_is_refused(tmp_path, change, needle):
    folder = _save_open_clip(
        load_public("b", spec("biomedclip"), seed=2), tmp_path / "bc", "open_clip_pytorch_model.bin"
    )
    state = torch.load(folder / "open_clip_pytorch_model.bin", weights_only=True)
    if change == "drop":
        state.pop("visual.trunk.norm.weight")
    elif change == "add":
        state["visual.trunk.extra"] = torch.zeros(2)
    else:
        state["visual.head.proj.weight"] = torch.zeros(8, 32)
    torch.save(state, folder / "open_clip_pytorch_model.bin")
    with pytest.raises(PublicEncoderError, match=needle):
        load_public("b", spec("biomedclip", path=str(folder)), seed=2)


def test_vit_attention_is_standard_multi_head_attention():
    """The fused qkv layout (q, k, v blocks, heads contiguous) as torch's reference multi-head attention."""
    torch.manual_seed(0)
    attn = Attention(32, 4)
    ref = torch.nn.MultiheadAttention(32, 4, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(attn.qkv.weight)
        ref.in_proj_bias.copy_(attn.qkv.bias)
        ref.out_proj.weight.copy_(attn.proj.weight)
        ref.out_proj.bias.copy_(attn.proj.bias)
    x = torch.randn(2, 7, 32)
    torch.testing.assert_close(attn(x), ref(x, x, x, need_weights=False)[0], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------ preprocessing
def test_images_pad_resize_replicate_normalise():
    sl = np.zeros((2, 4, 8), dtype=np.uint8)
    sl[0] = 255
    sl[1, :, :4] = 51  # 0.2
    out = to_images(sl, 8, MEAN, STD)
    assert out.shape == (2, 3, 8, 8) and out.dtype == torch.float32
    grey = out * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    torch.testing.assert_close(grey[:, 0], grey[:, 1]) and torch.testing.assert_close(grey[:, 0], grey[:, 2])
    # 4 x 8 padded to a centred 8 x 8 square: rows 0-1 and 6-7 are zero, rows 2-5 the slice
    assert torch.allclose(grey[0, 0, 2:6], torch.ones(4, 8)) and torch.allclose(grey[0, 0, :2], torch.zeros(2, 8))
    assert torch.allclose(grey[1, 0, 2:6, :4], torch.full((4, 4), 0.2)) and torch.allclose(
        grey[1, 0, 6:], torch.zeros(2, 8)
    )
    assert torch.allclose(out[0, :, 0, 0], -torch.tensor(MEAN) / torch.tensor(STD))
    big = to_images(sl, 32, MEAN, STD)  # resized to the encoder's input size
    assert big.shape == (2, 3, 32, 32)
    grey = big * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    assert torch.allclose(grey[0, 0, 10:22], torch.ones(12, 32), atol=1e-5)  # inside the slice, away from its edges


def test_slice_selection_foreground_stride_and_cap():
    mask = np.zeros((5, 2, 2), dtype=bool)
    mask[1, 0, 0] = mask[2, 1, 1] = mask[4, 0, 1] = True  # token slabs of 2 slices: 2-3, 4-5, 8-9
    assert slice_indices(10, mask, 2, 1, None).tolist() == [2, 3, 4, 5, 8, 9]
    assert slice_indices(10, mask, 2, 2, None).tolist() == [2, 4, 8]
    assert slice_indices(10, mask, 2, 1, 3).tolist() == [2, 4, 9]  # positions 0, 2.5 -> 2 (half to even), 5
    assert slice_indices(10, None, 2, 3, None).tolist() == [0, 3, 6, 9]
    assert slice_indices(10, np.zeros((5, 2, 2), bool), 2, 1, 4).tolist() == []


# ------------------------------------------------------------------------------------------------ feature store
@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(3)
    volumes = []
    for sid, study, mod, shape, slabs in VOLUMES:
        mask = np.zeros(token_shape(shape, PATCH), dtype=bool)
        for s in slabs:
            mask[s, rng.integers(0, mask.shape[1]), rng.integers(0, mask.shape[2])] = True
        data = [rng.integers(0, 256, size=shape, dtype=np.uint8) for _ in range(LAYOUTS[mod]["planes"])]
        meta = {"series_id": sid, "study_id": study, "patient_id": "p" + study, "modality": mod, "sequence": "x"}
        volumes.append((meta, data, mask))
    index = write_toy_split(root / "test", "test", volumes, PATCH, LAYOUTS)
    return {"test": index}


def _cfg(kind: str, **kw) -> dict:
    c = copy.deepcopy(load_config(ROOT / "config.yaml"))
    c["preprocess"]["patch"] = list(PATCH)
    c["features"].update(chunk_tokens=10, seed=3, progress_every_s=0.0)
    c["encoders"] = {"pub": spec(kind, **kw)}
    return validate(c)


@pytest.fixture(scope="module")
def extracted(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("features") / "pub"
    cfg = _cfg("biomedclip")
    pipeline.features(cfg, "pub", shards, None, out, device="cpu")
    return cfg, out


def test_one_token_per_slice_each_ct_window_separately(extracted, shards):
    cfg, out = extracted
    fr, sr = FeatureReader(out / "test"), ShardReader(shards["test"])
    assert fr.index["label"] == "pub (random weights)" and fr.index["weights"] == "random"
    assert fr.index["token"] == "slice" and fr.index["preprocessing"]["image_size"] == SIZE
    windows = [(e["series_id"], e["window"]) for e in fr.entries]
    assert windows == [("s1", w) for w in ("brain", "blood", "bone")] + [("s2", "mri"), ("s3", "mri")] + [
        ("s4", w) for w in ("brain", "blood", "bone")
    ]
    expect = {"s1": [2, 3, 4, 5, 6, 7], "s2": [0, 1, 2, 3, 4, 5], "s3": [4, 5], "s4": []}
    encoder = load_public("pub", cfg["encoders"]["pub"], seed=3)
    for i, e in enumerate(fr.entries):
        v = sr.position(e["series_id"])
        want = slice_indices(sr.volumes[v]["shape"][0], np.asarray(sr.token_mask(v)), PATCH[0], 1, 4)
        assert len(want) == min(4, len(expect[e["series_id"]]))
        assert set(want) <= set(expect[e["series_id"]])
        assert e["n_tokens"] == len(want) and e["grid"] == [sr.volumes[v]["shape"][0], 1, 1]
        np.testing.assert_array_equal(fr.coords(i), np.stack([want, 0 * want, 0 * want], axis=1))
        if len(want):  # each window's slices through the encoder on their own
            direct = embed(encoder, to_images(np.asarray(sr.channel(v, e["window"]))[want], SIZE, MEAN, STD))
            np.testing.assert_allclose(fr.features(i), direct.numpy().astype(np.float16), rtol=1e-2, atol=2e-3)
    brain, blood = fr.features(0), fr.features(1)
    assert not np.allclose(brain, blood)


def test_probe_bags_read_the_slice_tokens(extracted):
    _, out = extracted
    labels = pd.DataFrame({"study_id": ["A", "B", "C"], "split": "test", "x": [1, 0, 1], "y": [0, 1, 0]})
    ct = BagSet(FeatureReader(out / "test"), labels, ["x", "y"], "test", "ct")
    mr = BagSet(FeatureReader(out / "test"), labels, ["x", "y"], "test", "mri")
    assert ct.study_ids == ["A"] and ct.missing == ["B", "C"]  # C: no foreground slice
    assert ct.bag(0).shape == (3 * 4, 16)
    assert mr.study_ids == ["A", "B"] and mr.n_tokens.tolist() == [4, 2]
    tokens, cu = mr.pack([0, 1])
    assert tokens.shape == (6, 16) and cu.tolist() == [0, 4, 6]


def test_shard_jobs_and_merge_write_the_same_index(extracted, shards, tmp_path):
    cfg, out = extracted
    cfg = copy.deepcopy(cfg)
    cfg["store"]["shards"]["test"] = 1
    part = tmp_path / "parts" / "test-0.json"
    part.parent.mkdir()
    pipeline.features_shard(cfg, "pub", "test", 0, shards["test"], None, tmp_path / "f", part)
    assert not (tmp_path / "f" / "test" / "index.json").exists()
    pipeline.features_merge(cfg, "pub", shards, None, tmp_path / "f", {"test": [part]})
    merged = (tmp_path / "f" / "test" / "index.json").read_text()
    assert merged == (out / "test" / "index.json").read_text()
    assert len(json.loads(merged)["chunks"]) > 1  # chunk_tokens 10: several chunks, one study each at most


def test_dag_plans_features_then_probe_for_a_public_encoder(tmp_path):
    """The test DAG's config with one more public encoder (a file overlaid last: Snakemake's --config parses
    nested values as strings) plans its features and probe, and no pretraining."""
    extra = tmp_path / "public.yaml"
    extra.write_text(json.dumps({"encoders": {"tiny2d": {**spec("dinov3"), "max_slices": 2}}}))
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--directory", ".test"]
        + [
            "--configfile",
            ".test/config/config.yaml",
            str(extra),
            "--",
            "results/demo/probes/tiny2d/ct/predictions.csv",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    text = res.stdout + res.stderr
    for rule in ("features_shard", "features", "probe"):
        assert f"rule {rule}:" in text or f"localrule {rule}:" in text
    assert "features/tiny2d/test/index.json" in text and "rule pretrain:" not in text


def test_random_weight_public_encoder_is_marked_in_figure_tables(tmp_path):
    cfg = _cfg("dinov3")
    cfg["probes"]["encoders"] = ["random", "pub"]
    assert (
        pipeline.encoder_label(cfg, "pub") == "pub (random weights)"
        and pipeline.encoder_label(cfg, "random") == "random"
    )
    cfg["encoders"]["pub"]["path"] = str(tmp_path)
    assert pipeline.encoder_label(cfg, "pub") == "pub"
    cfg["encoders"]["pub"]["path"] = None
    row = {"n_test": 10, "n_classes": 2, "n_excluded": 0, "auroc": 0.6, "auroc_lo": 0.5, "auroc_hi": 0.7}
    row.update(balanced_accuracy=0.55, balanced_accuracy_lo=0.5, balanced_accuracy_hi=0.6)
    for enc in ("random", "pub"):
        for mod in ("ct", "mri"):
            pd.DataFrame([{"category": "all", **row}]).to_csv(tmp_path / f"diagnosis_{mod}_{enc}_categories.csv")
            pd.DataFrame({"status": ["ok", "ok"], "auroc": [0.6, 0.7]}).to_csv(tmp_path / f"diagnosis_{mod}_{enc}.csv")
    pipeline.fig_diagnosis(cfg, "fig2a", tmp_path, tmp_path / "fig2a.png")
    table = pd.read_csv(tmp_path / "fig2a.csv")
    assert sorted(set(table["encoder"])) == ["pub (random weights)", "random"]
