"""Scatter/gather of the data stages (issue 21): ingest in K header chunks + one merge, preprocessing one job
per shard + one merge, features one job per shard + one index merge. On a small synthetic export, every output
of the scattered route is byte-identical to the one-job route (K = 1 and K = 3), and each merge refuses a
missing, extra, truncated or stale part with one line."""

import copy
import json
import pickle
import shutil
from pathlib import Path

import pytest

from conftest import small_config
from neurovfm import pipeline
from neurovfm.ingest import scatter
from neurovfm.utils.failure import IncompleteParts, describe

pytestmark = pytest.mark.timeout(900)


def _tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part in skip for part in p.relative_to(root).parts)
    }


def _same(a: Path, b: Path, skip: tuple[str, ...] = ()) -> None:
    ta, tb = _tree(a, skip), _tree(b, skip)
    assert sorted(ta) == sorted(tb)
    assert ta, a
    different = [k for k in ta if ta[k] != tb[k]]
    assert not different, f"differ: {different}"


def _scattered_ingest(cfg, export: Path, base: Path, k: int) -> list[Path]:
    """walk -> k header chunks -> merge, as the workflow's three rules do; returns the chunk files."""
    cfg = copy.deepcopy(cfg)
    cfg["ingest"]["chunks"] = k
    priv = base / "priv"
    lists = [priv / "ingest" / "lists" / f"{i}-of-{k}.jsonl" for i in range(k)]
    chunks = [priv / "ingest" / "headers" / f"{i}-of-{k}.pkl" for i in range(k)]
    pipeline.ingest_walk(cfg, export / "dicom", lists)
    for lst, chunk in zip(lists, chunks):
        pipeline.ingest_headers(cfg, export / "dicom", lst, chunk, threads=1)
    pipeline.ingest_merge(cfg, chunks, export / "reports.csv", base / "ingest", priv)
    return chunks


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scatter")
    cfg = small_config(tmp, n_studies=10)
    cfg["store"]["shards"] = {"train": 3, "val": 6, "test": 1}  # more val shards than val studies
    cfg["features"].update(chunk_tokens=2000, progress_every_s=0.0)
    export = tmp / "export"
    pipeline.synth(cfg, export, threads=2)
    one = tmp / "one"
    pipeline.ingest(cfg, export / "dicom", export / "reports.csv", one / "ingest", one / "priv", threads=1)
    chunks = {k: _scattered_ingest(cfg, export, tmp / f"k{k}", k) for k in (1, 3)}
    return {"cfg": cfg, "tmp": tmp, "export": export, "one": one, "chunks": chunks}


@pytest.mark.parametrize("k", [1, 3])
def test_ingest_chunks_give_the_same_bytes(run, k):
    base = run["tmp"] / f"k{k}"
    _same(run["one"] / "ingest", base / "ingest")
    for name in ("files.csv", "reports.jsonl"):
        assert (run["one"] / "priv" / name).read_bytes() == (base / "priv" / name).read_bytes()
    # the chunks cover every file once: the ledger reconciles (write_outputs checks) and the counts add up
    heads = [scatter._chunk_head(p) for p in run["chunks"][k]]
    assert sum(h["n_files"] for h in heads) == heads[0]["n_files_total"] > 0
    assert [h["chunk"] for h in heads] == list(range(k))


def _merge(run, chunks, k):
    cfg = copy.deepcopy(run["cfg"])
    cfg["ingest"]["chunks"] = k
    out = run["tmp"] / "refused"
    shutil.rmtree(out, ignore_errors=True)
    return pipeline.ingest_merge(cfg, chunks, run["export"] / "reports.csv", out / "ingest", out / "priv")


def test_ingest_merge_refuses_incomplete_chunks(run, tmp_path):
    three, one = run["chunks"][3], run["chunks"][1]
    with pytest.raises(IncompleteParts, match=r"1 of 3 header chunks missing \(1-of-3\)") as err:
        _merge(run, [three[0], three[2]], 3)
    assert "\n" not in str(err.value) and describe(err.value).reason == "incomplete_parts"
    with pytest.raises(IncompleteParts, match="extra chunk 0-of-1.pkl"):
        _merge(run, [*three, one[0]], 3)
    with pytest.raises(IncompleteParts, match="given twice"):
        _merge(run, [three[0], three[0], three[1], three[2]], 3)
    cut = tmp_path / three[1].name
    cut.write_bytes(three[1].read_bytes()[:-40])
    with pytest.raises(IncompleteParts, match="truncated"):
        _merge(run, [three[0], cut, three[2]], 3)
    assert not (run["tmp"] / "refused" / "ingest" / "series.csv").exists()  # nothing written on refusal
    with open(three[0], "rb") as fh:  # a chunk of another listing (the export changed between jobs)
        head = pickle.load(fh)
        rest = fh.read()
    other = tmp_path / "0-of-3.pkl"
    with open(other, "wb") as fh:
        pickle.dump({**head, "listing": "0" * 64}, fh)
        fh.write(rest)
    with pytest.raises(IncompleteParts, match="different file listings"):
        _merge(run, [other, three[1], three[2]], 3)


def test_train_first_then_the_rest_gives_the_same_bytes(run, shards, tmp_path):
    """The workflow's two merges: the train split's index and statistics from its parts alone (pretraining starts
    there), then the other indexes, ledger and summary, which read train's shards but leave its files alone."""
    import shutil

    cfg, root = run["cfg"], run["export"] / "dicom"
    out = tmp_path / "shards"
    shutil.copytree(shards["sharded"], out)
    for name in ("train/index.json", "train/stats.json", "val/index.json", "test/index.json", "summary.json"):
        (out / name).unlink()
    (out / "exclusions.csv").unlink()
    train_parts = [p for p in shards["parts"] if p.name.startswith("train-")]
    pipeline.preprocess(
        cfg, shards["series"], shards["files"], root, out, parts=train_parts, index_splits=["train"], ledger=False
    )
    assert (out / "train" / "index.json").is_file() and (out / "train" / "stats.json").is_file()
    assert not (out / "val" / "index.json").exists() and not (out / "summary.json").exists()
    with pytest.raises(IncompleteParts, match="shard parts missing"):  # train alone needs all of train's parts
        pipeline.preprocess(
            cfg,
            shards["series"],
            shards["files"],
            root,
            out,
            parts=train_parts[1:],
            index_splits=["train"],
            ledger=False,
        )
    pipeline.preprocess(
        cfg, shards["series"], shards["files"], root, out, parts=train_parts, index_splits=["train"], ledger=False
    )
    before = {n: (out / "train" / n).stat().st_mtime_ns for n in ("index.json", "stats.json")}
    pipeline.preprocess(
        cfg, shards["series"], shards["files"], root, out, parts=shards["parts"], index_splits=["val", "test"]
    )
    assert {n: (out / "train" / n).stat().st_mtime_ns for n in ("index.json", "stats.json")} == before
    _same(shards["one"], out, skip=("parts",))
    with pytest.raises(ValueError, match="index_splits"):
        pipeline.preprocess(cfg, shards["series"], shards["files"], root, out, parts=shards["parts"], index_splits=[])


@pytest.fixture(scope="module")
def shards(run):
    """Preprocessing in one job, and one job per shard (train 3, val 6, test 1) + the merge."""
    cfg, one, tmp = run["cfg"], run["one"], run["tmp"]
    series, files, root = one / "ingest" / "series.csv", one / "priv" / "files.csv", run["export"] / "dicom"
    pipeline.preprocess(cfg, series, files, root, one / "shards", threads=1)
    sharded = tmp / "sharded" / "shards"
    parts = []
    for split, n in cfg["store"]["shards"].items():
        for s in range(n):
            part = sharded / "parts" / f"{split}-{s}.json"
            pipeline.preprocess_shard(cfg, series, files, root, sharded, split, s, part, threads=1)
            parts.append(part)
    pipeline.preprocess(cfg, series, files, root, sharded, threads=1, parts=parts)
    return {"one": one / "shards", "sharded": sharded, "parts": parts, "series": series, "files": files}


def test_preprocess_shard_jobs_give_the_same_bytes(shards):
    _same(shards["one"], shards["sharded"], skip=("parts",))
    assert len(shards["parts"]) == 10
    train = json.loads((shards["sharded"] / "train" / "index.json").read_text())
    assert len(train["shards"]) == 3 and len(train["volumes"]) > 3
    val = [json.loads(p.read_text()) for p in shards["parts"] if p.name.startswith("val-")]
    assert val[0]["file"] and val[-1]["file"] is None  # more shards than studies: the last jobs have nothing to do


def test_preprocess_merge_refuses_missing_or_stale_parts(run, shards):
    cfg, root = run["cfg"], run["export"] / "dicom"
    out, parts = shards["sharded"], shards["parts"]
    with pytest.raises(IncompleteParts, match=r"1 shard parts missing \(train/1\)"):
        pipeline.preprocess(
            cfg, shards["series"], shards["files"], root, out, parts=[p for p in parts if "train-1" not in p.name]
        )
    more = copy.deepcopy(cfg)
    more["store"]["shards"]["train"] = 2  # the parts were written for 3 train shards
    with pytest.raises(IncompleteParts, match="extra part train-2.json"):
        pipeline.preprocess(more, shards["series"], shards["files"], root, out, parts=parts)
    bin0 = out / "train" / "shard-00000.bin"
    keep = bin0.read_bytes()
    bin0.write_bytes(keep[:-1])  # a shard that does not match its sidecar any more
    try:
        with pytest.raises(IncompleteParts, match="shard train/0 is missing or out of date"):
            pipeline.preprocess(cfg, shards["series"], shards["files"], root, out, parts=parts)
    finally:
        bin0.write_bytes(keep)
    pipeline.preprocess(cfg, shards["series"], shards["files"], root, out, parts=parts)  # indexes back
    _same(shards["one"], out, skip=("parts",))


@pytest.fixture(scope="module")
def features(run, shards):
    cfg = run["cfg"]
    indices = {s: shards["one"] / s / "index.json" for s in ("train", "val", "test")}
    stats = shards["one"] / "train" / "stats.json"
    one = run["tmp"] / "features_one" / "random"
    pipeline.features(cfg, "random", indices, stats, one, threads=1, device="cpu")
    sharded = run["tmp"] / "features_sharded" / "random"
    sharded_indices = {s: shards["sharded"] / s / "index.json" for s in indices}
    parts = {s: [] for s in indices}
    for split, n in cfg["store"]["shards"].items():
        for s in range(n):
            part = sharded / "parts" / f"{split}-{s}.json"
            pipeline.features_shard(
                cfg, "random", split, s, sharded_indices[split], stats, sharded, part, threads=1, device="cpu"
            )
            parts[split].append(part)
    pipeline.features_merge(cfg, "random", sharded_indices, stats, sharded, parts)
    return {"one": one, "sharded": sharded, "parts": parts, "indices": sharded_indices, "stats": stats}


def test_features_shard_jobs_give_the_same_bytes(features):
    _same(features["one"], features["sharded"], skip=("parts",))
    assert sum(len(v) for v in features["parts"].values()) == 10
    chunks = [len(json.loads(p.read_text())["chunks"]) for p in features["parts"]["train"]]
    assert all(n >= 1 for n in chunks) and sum(chunks) > 3, chunks  # every train shard job wrote chunks


def test_features_merge_refuses_missing_parts(run, features):
    parts = {**features["parts"], "train": features["parts"]["train"][:2]}
    with pytest.raises(IncompleteParts, match="1 of 3 shard parts of train missing"):
        pipeline.features_merge(
            run["cfg"], "random", features["indices"], features["stats"], features["sharded"], parts
        )
    side = features["sharded"] / "train" / "chunk-00000.json"
    keep = side.read_text()
    side.unlink()
    try:
        with pytest.raises(IncompleteParts, match="chunk 0 of train is missing or out of date"):
            pipeline.features_merge(
                run["cfg"], "random", features["indices"], features["stats"], features["sharded"], features["parts"]
            )
    finally:
        side.write_text(keep)


def test_parallel_planning_is_the_same_plan(run, shards):
    """Every shard job plans every series (5.24 million at paper scale): on several workers, in blocks, the plan
    is the same jobs and exclusions in the same order."""
    import pandas as pd

    from neurovfm.preprocess import run as pr, source

    pcfg = run["cfg"]["preprocess"]
    series = pd.read_csv(shards["series"], dtype={"series_id": str, "study_id": str, "patient_id": str})
    files = source.index_files_csv(shards["files"])
    one = pr.plan_jobs(series, files, pcfg)
    many = pr.plan_parallel(series, files, pcfg, workers=2, block=7)
    assert len(series) > 14 and len(one[0]) > 14
    assert [j.meta for j in one[0]] == [j.meta for j in many[0]] and one[1] == many[1]
    fp = [pr._shard_fingerprint("train", g, pcfg, "dicom") for g in (one[0], many[0])]
    assert fp[0] == fp[1]
