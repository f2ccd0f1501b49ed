"""Preprocess -> shards -> reader: bit-exact round trip, ledger, stats, atomicity, resume, laziness, sampler."""

import copy
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from neurovfm.config import load_config
from neurovfm.ingest.volume import VolumeError
from neurovfm.models.patch_embed import patchify
from volume_factory import Acquisition, volume
from neurovfm.preprocess.run import run_preprocess
from neurovfm.preprocess.volume import plan, process
from neurovfm.store.dataset import VolumeDataset
from neurovfm.store.index import StoreIndexError
from neurovfm.store.reader import ShardReader
from neurovfm.store.sampler import StudySampler
from neurovfm.store.stats import compute_stats

CFG = load_config("config.yaml")
CFG["store"]["shards"] = {"train": 2, "val": 1, "test": 1}

GOOD = [  # series, study, modality, split, acquisition
    ("s01", "st1", "CT", "train", Acquisition("axial", (24, 80, 80), (1.6, 1.6), 5.0)),
    ("s02", "st1", "CT", "train", Acquisition("axial", (40, 96, 96), (1.0, 1.0), 2.5, tilt_deg=15.0)),
    ("s03", "st2", "MR", "train", Acquisition("sagittal", (22, 90, 90), (1.4, 1.4), 5.0)),
    ("s04", "st2", "MR", "train", Acquisition("coronal", (26, 80, 90), (1.3, 1.3), 5.0, oblique_deg=12.0)),
    ("s05", "st3", "MR", "train", Acquisition("axial", (24, 90, 90), (1.4, 1.4), 5.0)),
    ("s06", "st4", "CT", "val", Acquisition("axial", (20, 90, 90), (1.5, 1.5), 5.0)),
    ("s07", "st5", "MR", "test", Acquisition("axial", (22, 90, 90), (1.4, 1.4), 5.0, flip_rows=True)),
]
BAD = {
    "b_nan": "non_finite_values",
    "b_const": "constant_image",
    "b_tiny": "smaller_than_patch",
    "b_corrupt": "unreadable_pixels",
    "b_nofiles": "missing_files",
    "b_modality": "unknown_modality",
}


def npy_loader(paths, affine, shape):
    try:
        return np.load(paths[0]).astype(np.float32)
    except (ValueError, OSError) as err:
        raise VolumeError(str(err)) from err


class Boom(RuntimeError):
    """Simulates a job killed in the middle of writing a shard."""


def exploding_loader(paths, affine, shape):
    if Path(paths[0]).stem == os.environ.get("NEUROVFM_TEST_EXPLODE", ""):
        raise Boom("simulated kill")
    return npy_loader(paths, affine, shape)


def _row(sid, study, modality, split, acq):
    return {
        "series_id": sid,
        "study_id": study,
        "patient_id": "p" + study,
        "modality": modality,
        "sequence": "ct" if modality == "CT" else "t2",
        "orientation": acq.plane,
        "n_slices": acq.shape[0],
        "rows": acq.shape[1],
        "cols": acq.shape[2],
        "split": split,
        "affine_lps": json.dumps(acq.affine().ravel().tolist()),
    }


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    rows, files = [], []
    for i, (sid, study, mod, split, acq) in enumerate(GOOD):
        arr, _ = volume(acq, mod, noise=4.0, seed=i)
        np.save(root / f"{sid}.npy", arr)
        rows.append(_row(sid, study, mod, split, acq))
    base = Acquisition("axial", (20, 64, 64), (1.0, 1.0), 4.0)
    for sid in BAD:
        acq = Acquisition("axial", (3, 64, 64), (1.0, 1.0), 1.0) if sid == "b_tiny" else base
        arr, _ = volume(acq, "CT")
        if sid == "b_nan":
            arr[2, 3, 4] = np.nan
        if sid == "b_const":
            arr[:] = 7.0
        np.save(root / f"{sid}.npy", arr)
        if sid == "b_corrupt":
            (root / f"{sid}.npy").write_bytes(b"not an array")
        rows.append(_row(sid, "st9", "PT" if sid == "b_modality" else "CT", "train", acq))
    for r in rows:
        if r["series_id"] != "b_nofiles":
            files.append(
                {
                    "file_id": "f" + r["series_id"],
                    "series_id": r["series_id"],
                    "slice_index": 0,
                    "path": f"{r['series_id']}.npy",
                }
            )
    pd.DataFrame(rows).to_csv(root / "series.csv", index=False)
    pd.DataFrame(files).to_csv(root / "files.csv", index=False)
    return root


@pytest.fixture(scope="module")
def shards(export, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    summary = run_preprocess(
        export / "series.csv", export / "files.csv", export, out, CFG, workers=2, loader=npy_loader
    )
    return out, summary


def test_every_series_is_written_or_excluded(shards, export):
    out, summary = shards
    ledger = pd.read_csv(out / "exclusions.csv")
    assert dict(zip(ledger.series_id, ledger.reason)) == BAD
    assert set(ledger.stage) == {"preprocess"} and list(ledger.columns) == [
        "unit",
        "file_id",
        "series_id",
        "study_id",
        "n_files",
        "reason",
        "detail",
        "stage",
    ]
    written = {v["series_id"] for s in ("train", "val", "test") for v in ShardReader(out / s / "index.json").volumes}
    assert written == {g[0] for g in GOOD}
    assert summary["splits"]["train"]["shards"] == 2 and summary["splits"]["val"]["shards"] == 1


def test_round_trip_is_bit_exact(shards, export):
    out, _ = shards
    for sid, study, mod, split, acq in GOOD:
        reader = ShardReader(out / split / "index.json")
        i = reader.position(sid)
        arr = np.load(export / f"{sid}.npy")
        res = process(arr, acq.affine(), mod, plan(acq.affine(), acq.shape, CFG["preprocess"]), CFG["preprocess"])
        for p, plane in enumerate(res.planes):
            assert np.array_equal(reader.plane(i, p), plane)
        assert np.array_equal(reader.token_mask(i), res.token_mask)
        if mod == "CT":
            assert np.array_equal(reader.channel(i, "blood"), (res.planes[1] >> 4) * 17)
            assert np.array_equal(reader.channel(i, "bone", scaled=False), res.planes[1] & 15)
            assert np.shares_memory(reader.channel(i, "brain"), reader.record(i))
        entry = reader.volumes[i]
        assert entry["study_id"] == study and entry["split"] == split and entry["offset"] % 4096 == 0


def test_train_stats_match_a_direct_computation(shards, export):
    out, _ = shards
    stats = json.loads((out / "train" / "stats.json").read_text())["stats"]
    acc = {}
    for sid, _, mod, split, acq in GOOD:
        if split != "train":
            continue
        arr = np.load(export / f"{sid}.npy")
        res = process(
            arr,
            acq.affine(),
            mod,
            plan(acq.affine(), acq.shape, CFG["preprocess"]),
            CFG["preprocess"],
            keep_voxel_mask=True,
        )
        reader = ShardReader(out / "train" / "index.json")
        i = reader.position(sid)
        for name in reader.channels(i):
            acc.setdefault((mod, name), []).append(reader.channel(i, name)[res.voxel_mask] / 255.0)
    for (mod, name), parts in acc.items():
        vals = np.concatenate(parts)
        assert stats[mod][name]["mean"] == pytest.approx(vals.mean(), rel=1e-9)
        assert stats[mod][name]["std"] == pytest.approx(vals.std(), rel=1e-6)


def test_interrupted_write_leaves_nothing_readable_and_rerun_resumes(export, tmp_path, monkeypatch):
    cfg = copy.deepcopy(CFG)
    out = tmp_path / "out"
    first = run_preprocess(export / "series.csv", export / "files.csv", export, out, cfg, workers=1, loader=npy_loader)
    shard_files = sorted((out / "train").glob("shard-*.bin"))
    stamps = {p: p.stat().st_mtime_ns for p in shard_files}
    # kill while writing the shard that holds s05: no index may survive, that shard is not committed
    reader = ShardReader(out / "train" / "index.json")
    victim = reader.volumes[reader.position("s05")]["shard"]
    monkeypatch.setenv("NEUROVFM_TEST_EXPLODE", "s05")
    (out / "train" / f"shard-{victim:05d}.json").unlink()  # that shard must be redone
    (out / "train" / f"shard-{victim:05d}.bin").unlink()
    with pytest.raises(Boom):
        run_preprocess(
            export / "series.csv", export / "files.csv", export, out, cfg, workers=1, loader=exploding_loader
        )
    assert not (out / "train" / "index.json").exists()
    with pytest.raises(StoreIndexError):
        ShardReader(out / "train" / "index.json")
    assert (out / "train" / f".shard-{victim:05d}.bin.tmp").exists()
    assert not (out / "train" / f"shard-{victim:05d}.bin").exists()
    monkeypatch.delenv("NEUROVFM_TEST_EXPLODE")
    second = run_preprocess(
        export / "series.csv", export / "files.csv", export, out, cfg, workers=1, loader=exploding_loader
    )
    assert second == first
    for p, t in stamps.items():
        if p.name != f"shard-{victim:05d}.bin":
            assert p.stat().st_mtime_ns == t  # finished shards were not rewritten
    reader = ShardReader(out / "train" / "index.json")
    assert len(reader) == first["splits"]["train"]["volumes"]
    # a shard shorter than the index says is refused on access
    path = out / "train" / f"shard-{victim:05d}.bin"
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size - 1)
    with pytest.raises(StoreIndexError):
        ShardReader(out / "train" / "index.json").plane(reader.position("s05"), 0)


def test_opening_a_reader_touches_no_shard(shards, tmp_path):
    out, _ = shards
    reader = ShardReader(out / "train" / "index.json")
    opened = {
        os.path.realpath(f"/proc/self/fd/{fd}")
        for fd in os.listdir("/proc/self/fd")
        if os.path.exists(f"/proc/self/fd/{fd}")
    }
    assert not any(p.endswith(".bin") and str(out) in p for p in opened)
    assert reader._maps == {}
    moved = tmp_path / "moved"
    moved.mkdir()
    for p in (out / "train").glob("shard-*.bin"):
        os.replace(p, moved / p.name)
    try:
        lazy = ShardReader(out / "train" / "index.json")  # shards absent: opening still works
        assert len(lazy) == len(reader)
        with pytest.raises(StoreIndexError):
            lazy.plane(0, 0)
    finally:
        for p in moved.glob("*.bin"):
            os.replace(p, out / "train" / p.name)
    assert reader.plane(0, 0).shape == tuple(reader.volumes[0]["shape"])


def test_dataset_normalises_and_samples_ct_windows(shards):
    out, _ = shards
    stats = out / "train" / "stats.json"
    ds = VolumeDataset(
        out / "train" / "index.json", stats=stats, ct_window_probs={"brain": 0.7, "blood": 0.15, "bone": 0.15}, seed=1
    )
    items = [ds[i] for i in range(len(ds))]
    for it in items:
        assert it["image"].dtype == torch.float32 and it["image"].shape[0] == 1
        assert it["token_mask"].dtype == torch.bool
    assert [ds[i]["channels"] for i in range(len(ds))] == [it["channels"] for it in items]
    full = VolumeDataset(out / "train" / "index.json")
    ct = next(i for i in range(len(full)) if full.volumes[i]["modality"] == "CT")
    raw = full[ct]
    assert raw["channels"] == ["brain", "blood", "bone"]
    expect = torch.from_numpy(full.reader.channel(ct, "brain") / np.float32(255))
    assert torch.allclose(raw["image"][0], expect, rtol=1e-6, atol=0)


def test_sampler_keeps_studies_together_and_balances():
    vols = [{"study_id": f"st{i // 3}", "modality": "CT" if i < 30 else "MR"} for i in range(90)]
    s = StudySampler(vols, seed=3)
    order = list(s)
    assert sorted(order) == list(range(90))
    runs = [vols[i]["study_id"] for i in order]
    changes = [a for a, b in zip(runs, runs[1:]) if a != b]
    assert len(changes) == 29  # 30 studies, each one contiguous run
    s.set_epoch(1)
    assert list(s) != order
    bal = StudySampler(vols, seed=0, ct_fraction=0.5, studies_per_epoch=2000)
    mods = [vols[g[0]]["modality"] for g in bal.study_batches()]
    assert abs(mods.count("CT") / len(mods) - 0.5) < 0.05
    parts = [set(StudySampler(vols, seed=5, rank=r, world_size=3)) for r in range(3)]
    assert set().union(*parts) == set(range(90)) and sum(len(p) for p in parts) == 90


def test_stats_are_exact_integer_moments():
    vols = [
        {"modality": "MR", "moments": {"mri": [2, 255, 255 * 255]}},
        {"modality": "MR", "moments": {"mri": [2, 0, 0]}},
    ]
    s = compute_stats(vols)["stats"]["MR"]["mri"]
    assert s["mean"] == pytest.approx(0.25) and s["std"] == pytest.approx(np.sqrt(0.25 - 0.0625))


def test_lazy_tokens_are_bit_identical_to_the_eager_image(shards):
    """A lazy item reads and normalises only the tokens asked for: the same float32 values, bit for bit, as the
    eager image cut into patches (every CT window, 8-bit and unpacked 4-bit, and MRI; with statistics)."""
    out, _ = shards
    stats = out / "train" / "stats.json"
    eager = VolumeDataset(out / "train" / "index.json", stats=stats)
    lazy = VolumeDataset(out / "train" / "index.json", stats=stats, lazy=True)
    patch = tuple(CFG["preprocess"]["patch"])
    rng = np.random.default_rng(0)
    modalities, windows = set(), set()
    for i in range(len(eager)):
        item, volume = eager[i], lazy[i]["image"]
        image = item["image"]
        modalities.add(item["modality"])
        windows.update(item["channels"])
        assert volume.shape == tuple(image.shape)
        assert torch.equal(volume.full(), image)
        patches, coords = patchify(image, patch)
        pick = np.sort(rng.choice(len(coords), size=min(7, len(coords)), replace=False))
        got = volume.tokens(coords[pick].numpy(), patch)
        assert got.dtype == torch.float32 and torch.equal(got, patches[pick])
        other = (pick + 1) % len(coords)  # positive control: the neighbouring tokens are other values
        assert not torch.equal(volume.tokens(coords[other].numpy(), patch), got)
    assert modalities == {"CT", "MR"} and {"brain", "blood", "bone"} <= windows


def test_hlip_collator_reads_the_same_tokens_lazily(shards):
    """HLIP's collator on a lazy item keeps the same tokens with the same values as the former path (the eager
    image cropped, cut into every patch, then the kept rows), for whole and capped volumes."""
    from neurovfm.hlip.collate import StudyCollator
    from neurovfm.jepa.augment import crop_box, voxel_box

    out, _ = shards
    stats = out / "train" / "stats.json"
    eager = VolumeDataset(out / "train" / "index.json", stats=stats)
    lazy = VolumeDataset(out / "train" / "index.json", stats=stats, lazy=True)
    patch = tuple(CFG["preprocess"]["patch"])
    for cap in (None, 5):
        collate = StudyCollator(CFG["pretrain"], patch, 3, {}, None, max_tokens=cap)
        for i in range(len(eager)):
            item = {**eager[i], "epoch": 2, "offset": i}
            rng = np.random.default_rng([3, 0, 2, i])  # the former path, with the collator's own draws
            mask = item["token_mask"].bool()
            box = crop_box(mask.numpy(), collate.max_crop, rng)
            patches, coords = patchify(item["image"][(slice(None), *voxel_box(box, patch))].contiguous(), patch)
            keep = torch.nonzero(mask[box].reshape(-1)).squeeze(1)
            if cap is not None and keep.numel() > cap:
                keep = keep[torch.from_numpy(np.sort(rng.choice(keep.numel(), cap, replace=False)))]
            for source in (item, {**lazy[i], "epoch": 2, "offset": i}):
                got_p, got_c, n_fg = collate.volume(source)
                assert torch.equal(got_p, patches[keep]) and torch.equal(got_c, coords[keep])
                assert n_fg == int(mask.sum())


@pytest.mark.parametrize("max_crop", [(20, 20, 20), (3, 2, 3)])
def test_jepa_and_mae_collators_read_the_same_tokens_lazily(shards, max_crop):
    """Vol-JEPA's and VideoMAE's collators on a lazy item (the trainers' datasets) give the samples of the whole
    image bit for bit (tokens, coordinates, masks, grids) over many crop, flip and swap draws, cropped or whole, with
    one channel (a drawn CT window) and three (every window). The draws do differ (so the comparison saw several
    orientations); the block orientation itself against every combination, with a positive control, is tested
    below."""
    from neurovfm.jepa.collate import Collator
    from neurovfm.mae.masking import spec_from_model
    from neurovfm.mae.train import MaskCollator

    out, _ = shards
    stats = out / "train" / "stats.json"
    pretrain = {**CFG["pretrain"], "max_crop_tokens": list(max_crop)}
    patch = tuple(CFG["preprocess"]["patch"])
    spec = spec_from_model(CFG["pretrain"]["models"]["tiny_mae"])
    collators = [Collator(pretrain, patch, seed=5), MaskCollator(pretrain, patch, seed=5, spec=spec)]
    for kwargs in (
        {"ct_window_probs": CFG["pretrain"]["ct_window_probs"]},
        {"ct_channels": ["brain", "blood", "bone"]},
    ):
        eager = VolumeDataset(out / "train" / "index.json", stats=stats, **kwargs)
        lazy = VolumeDataset(out / "train" / "index.json", stats=stats, lazy=True, **kwargs)
        for i in range(len(eager)):
            for collate in collators:
                seen = set()
                for draw in range(8):
                    for mode in (0, 1):
                        a = collate.sample(eager[i], mode, np.random.default_rng([draw, i, mode]))
                        b = collate.sample(lazy[i], mode, np.random.default_rng([draw, i, mode]))
                        assert b.image is None and a.image is not None
                        assert torch.equal(a.patches, b.patches) and a.patches.dtype == b.patches.dtype
                        assert torch.equal(a.coords, b.coords) and a.coords.dtype == b.coords.dtype
                        assert torch.equal(a.context, b.context) and torch.equal(a.target, b.target)
                        assert torch.equal(a.fg_grid, b.fg_grid) and a.grid == b.grid
                        seen.add(b.patches.numpy().tobytes())
                assert len(seen) > 2, "the draws gave too few different samples to compare"


def test_oriented_token_blocks_equal_the_oriented_crop_cut_into_patches():
    """source_tokens + orient_blocks against orient + patchify on a random two-channel volume, for all 16 flip and
    swap combinations and an offset crop; a wrong orientation of the blocks (the swap left out) is seen."""
    from neurovfm.jepa.augment import orient, orient_blocks, orient_grid, source_tokens, voxel_box
    from neurovfm.models.patch_embed import gather_tokens

    rng = np.random.default_rng(1)
    patch = (2, 4, 4)
    image = torch.from_numpy(rng.random((2, 10, 24, 20), dtype=np.float32))  # a 5 x 6 x 5 token grid
    mask = torch.from_numpy(rng.random((5, 6, 5)) < 0.6)
    box = (slice(1, 4), slice(1, 6), slice(0, 4))
    for code in range(16):
        flips, swap = tuple(bool(code >> k & 1) for k in range(3)), bool(code >> 3)
        crop, grid = orient(image[(slice(None), *voxel_box(box, patch))], mask[box], flips, swap)
        assert torch.equal(grid, orient_grid(mask[box], flips, swap))
        patches, coords = patchify(crop, patch)
        keep = grid.reshape(-1)
        src = source_tokens(torch.nonzero(grid).numpy(), box, flips, swap)
        raw = np.stack([gather_tokens(image[c].numpy(), src, patch) for c in range(2)], axis=1)
        got = torch.from_numpy(orient_blocks(raw, flips, swap).reshape(len(raw), -1))
        assert torch.equal(torch.nonzero(grid), coords[keep])
        assert torch.equal(got, patches[keep]), (flips, swap)
        if swap:
            wrong = torch.from_numpy(orient_blocks(raw, flips, False).reshape(len(raw), -1))
            assert not torch.equal(wrong, patches[keep])
    with pytest.raises(ValueError, match="square"):  # the swap of non-square in-plane patches is refused
        orient_blocks(np.zeros((1, 1, 2, 4, 2), dtype=np.float32), (False, False, False), True)


def test_feature_items_are_the_same_from_lazy_volumes(shards):
    """The feature extractor's items (one per window, foreground tokens in C order) from a lazy item equal those cut
    from the whole image, bit for bit, every CT window and MRI; a volume without foreground gives empty items."""
    from neurovfm.features.extract import volume_items

    out, _ = shards
    stats = out / "train" / "stats.json"
    eager = VolumeDataset(out / "train" / "index.json", stats=stats)
    lazy = VolumeDataset(out / "train" / "index.json", stats=stats, lazy=True)
    patch = tuple(CFG["preprocess"]["patch"])
    windows = 0
    for i in range(len(eager)):
        a, b = volume_items(eager, i, patch), volume_items(lazy, i, patch)
        assert [x["meta"] for x in a] == [y["meta"] for y in b]
        for x, y in zip(a, b):
            assert torch.equal(x["patches"], y["patches"]) and torch.equal(x["coords"], y["coords"])
            assert x["coords"].dtype == y["coords"].dtype == torch.int64
        windows += len(a)
    assert windows > len(eager)  # CT volumes gave several windows

    class NoForeground:  # the lazy dataset with an empty token mask
        volumes = lazy.volumes

        def __getitem__(self, i):
            item = lazy[i]
            return {**item, "token_mask": torch.zeros_like(item["token_mask"])}

    empty = volume_items(NoForeground(), 0, patch)
    assert empty and all(x["patches"].shape == (0, int(np.prod(patch))) for x in empty)
