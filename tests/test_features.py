"""Frozen feature extraction: foreground coverage and coordinates, packing invariance, CT windows, resume,
random-encoder determinism, per-study reads, strict encoder loading. Tiny shards built here with the store
writer (patch 2 x 4 x 4) and the tiny ViT, so everything runs in seconds on a CPU."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neurovfm import pipeline
from neurovfm.config import load_config
from neurovfm.features import extract as fx
from neurovfm.features.encoders import load_frozen, random_encoder, weights_digest
from neurovfm.features.store import FeatureReader, FeatureStoreError, chunk_file, coords_file, sidecar_file
from neurovfm.jepa.checkpoint import save_encoder
from neurovfm.models.patch_embed import patchify
from neurovfm.store.index import token_shape
from neurovfm.store.reader import ShardReader
from neurovfm.store.stats import write_stats

from shard_factory import TOY_LAYOUTS as LAYOUTS, write_toy_split

ROOT = Path(__file__).resolve().parent.parent
PATCH = (2, 4, 4)
STATS = {
    "CT": {
        "brain": {"mean": 0.5, "std": 0.3},
        "blood": {"mean": 0.4, "std": 0.35},
        "bone": {"mean": 0.33, "std": 0.13},
    },
    "MR": {"mri": {"mean": 0.58, "std": 0.17}},
}
VOLUMES = {  # split -> (series, study, modality, shape, foreground share)
    "train": [
        ("s1", "A", "CT", (8, 16, 16), 0.6),
        ("s2", "A", "MR", (6, 16, 12), 0.7),
        ("s3", "B", "MR", (10, 12, 16), 0.5),
        ("s4", "C", "CT", (4, 8, 8), 0.0),
        ("s5", "D", "MR", (8, 8, 16), 1.0),
        ("s6", "E", "CT", (6, 12, 12), 0.8),
    ],
    "val": [("s7", "F", "CT", (6, 16, 16), 0.5)],
    "test": [("s8", "G", "MR", (8, 12, 12), 0.6), ("s9", "G", "MR", (4, 16, 16), 0.4)],
}


def _write_split(root: Path, split: str, vols, rng) -> Path:
    volumes = []
    for sid, study, mod, shape, share in vols:
        mask = rng.random(token_shape(shape, PATCH)) < share
        data = [rng.integers(0, 256, size=shape, dtype=np.uint8) for _ in range(LAYOUTS[mod]["planes"])]
        volumes.append(
            (
                {
                    "series_id": sid,
                    "study_id": study,
                    "patient_id": "p" + study,
                    "modality": mod,
                    "sequence": "ct" if mod == "CT" else "t2",
                },
                data,
                mask,
            )
        )
    return write_toy_split(root / split, split, volumes, PATCH, LAYOUTS)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(7)
    indices = {split: _write_split(root, split, vols, rng) for split, vols in VOLUMES.items()}
    stats = root / "train" / "stats.json"
    write_stats(stats, {"scale": "voxel / 255", "split": "train", "stats": STATS})
    return indices, stats


@pytest.fixture(scope="module")
def cfg():
    c = copy.deepcopy(load_config(ROOT / "config.yaml"))
    c["preprocess"]["patch"] = list(PATCH)
    c["features"].update(max_tokens=150, chunk_tokens=100, seed=3, progress_every_s=0.0)
    return c


def _run(cfg, shards, out):
    indices, stats = shards
    return pipeline.features(cfg, "random", indices, stats, out, device="cpu")


@pytest.fixture(scope="module")
def extracted(cfg, shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("features") / "random"
    summary = _run(cfg, shards, out)
    return out, summary


def _direct(encoder, reader: ShardReader, i: int, window: str):
    """Reference: the normalisation written out by hand, then one encoder call on this volume alone."""
    v = reader.volumes[i]
    s = STATS[v["modality"]][window]
    img = (reader.channel(i, window).astype(np.float32) / np.float32(255.0) - np.float32(s["mean"])) / np.float32(
        s["std"]
    )
    patches, coords = patchify(torch.from_numpy(img)[None], PATCH)
    m = torch.from_numpy(np.array(reader.token_mask(i))).reshape(-1)
    p, c = patches[m], coords[m]
    with torch.no_grad():
        f = encoder(p, c, torch.tensor([0, len(p)], dtype=torch.int32), len(p))
    return f.numpy(), c.numpy()


def test_every_foreground_token_once_with_coords_and_windows(extracted, shards):
    out, summary = extracted
    indices, _ = shards
    for split, index in indices.items():
        reader, feats = ShardReader(index), FeatureReader(out / split / "index.json")
        assert summary[split]["chunks"] >= (2 if split == "train" else 1)
        by_series = {}
        for k, e in enumerate(feats.entries):
            by_series.setdefault(e["series_id"], []).append((e, feats.coords(k), feats.features(k)))
        assert set(by_series) == {v["series_id"] for v in reader.volumes}
        for i, v in enumerate(reader.volumes):
            got = by_series[v["series_id"]]
            expect_windows = ["brain", "blood", "bone"] if v["modality"] == "CT" else ["mri"]
            assert [e["window"] for e, _, _ in got] == expect_windows  # CT: one entry per window
            want = np.argwhere(np.array(reader.token_mask(i)))  # C order, each token once
            for e, coords, f in got:
                assert e["n_tokens"] == v["mask"]["n_foreground"] == len(want)
                assert coords.dtype == np.int16 and f.dtype == np.float16 and f.shape == (len(want), feats.dim)
                np.testing.assert_array_equal(coords, want)
                assert np.isfinite(f).all()
            assert len({e["chunk"] for e, _, _ in got}) == 1
        studies = {}
        for e in feats.entries:
            studies.setdefault(e["study_id"], set()).add(e["chunk"])
        assert all(len(c) == 1 for c in studies.values())  # studies never span chunks


def test_packed_features_equal_direct_per_volume_call(extracted, shards, cfg):
    out, _ = extracted
    indices, stats = shards
    encoder, _ = random_encoder(cfg, 3)
    from neurovfm.store.dataset import VolumeDataset

    ds = VolumeDataset(indices["train"], stats)
    items = [it for i in range(len(ds)) for it in fx.volume_items(ds, i, PATCH)]
    packs = []
    orig = fx.encode_pack

    def spy(enc, its, device, precision="auto"):
        packs.append(len(its))
        return orig(enc, its, device, precision)

    fx.encode_pack = spy
    try:
        got = list(fx.encode_items(encoder, items, 150, torch.device("cpu")))
    finally:
        fx.encode_pack = orig
    assert max(packs) > 1  # packing happened
    feats = FeatureReader(out / "train" / "index.json")
    pos = {(e["series_id"], e["window"]): k for k, e in enumerate(feats.entries)}
    for it, f in got:
        i = ds.reader.position(it["meta"]["series_id"])
        ref, ref_coords = _direct(encoder, ds.reader, i, it["meta"]["window"])
        np.testing.assert_allclose(f.numpy(), ref, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(it["coords"].numpy(), ref_coords)
        stored = feats.features(pos[(it["meta"]["series_id"], it["meta"]["window"])])
        np.testing.assert_allclose(stored.astype(np.float32), ref, atol=2e-3, rtol=1e-3)  # float16 storage


def test_resume_skips_finished_chunks_identical_bytes(extracted, shards, cfg, monkeypatch):
    out, summary = extracted
    split = out / "train"
    n = summary["train"]["chunks"]
    before = {p.name: p.read_bytes() for p in split.iterdir()}
    redo = 1
    redo_tokens = json.loads((split / sidecar_file(redo)).read_text())["n_tokens"]
    (split / sidecar_file(redo)).unlink()  # chunk 1 as if killed before its sidecar
    (split / chunk_file(redo)).write_bytes(b"partial")
    encoded = []
    orig = fx.encode_pack
    monkeypatch.setattr(
        fx,
        "encode_pack",
        lambda enc, its, *a, **k: (encoded.append(sum(len(it["patches"]) for it in its)), orig(enc, its, *a, **k))[1],
    )
    again = _run(cfg, shards, out)
    assert again["train"]["chunks_reused"] == n - 1 and again["train"]["tokens_encoded"] == redo_tokens
    assert sum(encoded) == redo_tokens  # val/test fully reused: nothing else encoded
    assert again["val"]["tokens_encoded"] == again["test"]["tokens_encoded"] == 0
    after = {p.name: p.read_bytes() for p in split.iterdir()}
    assert after == before


def test_failed_run_leaves_no_index_and_keeps_finished_chunks(cfg, shards, tmp_path, monkeypatch):
    calls = []
    orig = fx.encode_pack

    def boom(enc, its, *a, **k):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("simulated kill")
        return orig(enc, its, *a, **k)

    monkeypatch.setattr(fx, "encode_pack", boom)
    with pytest.raises(RuntimeError):
        _run(cfg, shards, tmp_path / "f")
    split = tmp_path / "f" / "train"
    assert not (split / "index.json").exists()
    assert (split / sidecar_file(0)).exists() and not (split / sidecar_file(1)).exists()
    assert not any(p.name.endswith(".tmp") for p in split.iterdir())


def test_random_encoder_deterministic_by_seed(cfg):
    state = torch.get_rng_state()
    a, mcfg = random_encoder(cfg, 11)
    b, _ = random_encoder(cfg, 11)
    c, _ = random_encoder(cfg, 12)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is untouched
    assert weights_digest(a) == weights_digest(b) != weights_digest(c)
    assert mcfg["architecture_of"] == cfg["pretrain"]["train"][0] and not a.training
    assert not any(p.requires_grad for p in a.parameters())


def test_pretrained_encoder_loads_strictly(cfg, tmp_path):
    enc, mcfg = random_encoder(cfg, 5)
    path = tmp_path / "pretrain" / "tiny" / "encoder.pt"
    path.parent.mkdir(parents=True)
    save_encoder(path, enc, {k: v for k, v in mcfg.items() if k not in ("random_seed", "architecture_of")}, 7)
    got, _ = load_frozen("tiny", cfg, path)
    assert weights_digest(got) == weights_digest(enc) and not got.training
    blob = torch.load(path, weights_only=False)
    blob["state_dict"].pop("norm.weight")
    torch.save(blob, path)
    with pytest.raises(RuntimeError):
        load_frozen("tiny", cfg, path)


def test_reading_one_study_touches_only_its_chunk(extracted, tmp_path):
    import shutil

    out, _ = extracted
    split = tmp_path / "train"
    shutil.copytree(out / "train", split)
    feats = FeatureReader(split / "index.json")
    study = feats.entries[-1]["study_id"]
    keep = feats.entries[-1]["chunk"]
    for c in range(len(feats.index["chunks"])):
        if c != keep:
            (split / chunk_file(c)).unlink()
            (split / coords_file(c)).unlink()
    rows = feats.study(study)
    assert rows and {r["chunk"] for r in rows} == {keep} and set(feats._maps) == {keep}
    assert sum(r["features"].shape[0] for r in rows) == sum(r["n_tokens"] for r in rows)
    other = next(e["study_id"] for e in feats.entries if e["chunk"] != keep)
    with pytest.raises(FeatureStoreError):
        feats.study(other)
