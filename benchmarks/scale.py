"""Measured inputs of the paper-scale model (docs/scale.md): the cost of one unit of each scattered data job.

    python benchmarks/scale.py OUT.json [--n-studies 40] [--model base] [--feature-split val] [--workdir DIR]
    python benchmarks/scale.py project OUT.json [--chunks 64] [--shards train=10,val=1,test=1] [--cores 32] ...

Writes a synthetic export with the demo's settings (config.yaml; only ``synth.n_studies`` changed), then runs
the workflow's own job functions in the order of the DAG, each in a fresh (spawned) Python process with one worker and one
torch thread, and records per job: wall and CPU seconds (the process and the workers it waited for), peak
resident memory, and the units it processed:

- ``ingest_walk`` (files listed), ``ingest_headers`` (one chunk: files whose headers were read; the size of the
  private chunk file), ``ingest`` (the merge: files folded into series and studies);
- ``preprocess_shard`` per shard (volumes written, native voxels read, shard bytes), ``preprocess`` (merge);
- ``features_shard`` of ``--feature-split``'s shard 0 with the random-weight encoder of the ``--model``
  architecture (stored tokens encoded, CPU).

Per-unit figures (``per_unit``): CPU seconds per file (walk, headers, merge), per volume and per native megavoxel
(preprocessing), per stored token (features), bytes per file (header chunk) and per volume (shards), peak
memory per job. The costs are per core: the jobs scale with their worker count (process pools; torch threads).

``project`` turns a measurement into paper-scale job durations (200 million files, 5.24 million volumes, 566,915
studies), node-hours and the wall time of the data stages on 1, 10 and 50 nodes (docs/scale.md, assumptions as
options).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neurovfm import pipeline  # noqa: E402
from neurovfm.config import load_config, validate  # noqa: E402


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _child(fn, args, queue) -> None:
    import torch

    torch.set_num_threads(1)
    t0, c0 = time.perf_counter(), _cpu()
    out = fn(*args)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    rss_kb = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    )
    queue.put({"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": rss_kb / 1024, "result": _plain(out)})


def _plain(obj):
    try:
        return json.loads(json.dumps(obj, default=str))
    except (TypeError, ValueError):
        return None


def _traced_child(fn, args, queue) -> None:
    import tracemalloc

    fn(*args)  # once untraced: imports and caches are not what grows with the files
    tracemalloc.start()
    fn(*args)
    queue.put(tracemalloc.get_traced_memory()[1])


def traced_peak(fn, *args) -> int:
    """Peak bytes that Python allocated while ``fn(*args)`` ran a second time (tracemalloc, in a fresh process,
    after one untraced run; not timed)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_traced_child, args=(fn, args, queue))
    proc.start()
    peak = queue.get()
    proc.join()
    return int(peak)


def timed(name: str, fn, *args) -> dict:
    """Run ``fn(*args)`` in a fresh (spawned) Python process, as a job would: its wall and CPU seconds (its
    own and its workers'), and its peak resident memory (imports included)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, args, queue))
    proc.start()
    rec = queue.get()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"{name} failed (exit {proc.exitcode})")
    print(f"{name}: {rec['wall_s']:.2f} s wall, {rec['cpu_s']:.2f} s CPU, {rec['peak_rss_mb']:.0f} MB", flush=True)
    return {"job": name, **rec}


def plan_costs(series_csv: Path, files_csv: Path, pcfg: dict, repeats: int = 3) -> dict:
    """CPU seconds of what every preprocess_shard job (and the merge) does before its own shard: index files.csv
    (per row) and plan every series from its header geometry (per series); best of ``repeats``, imports warm."""
    from neurovfm.preprocess import run as pr
    from neurovfm.preprocess import source

    series = pd.read_csv(series_csv, dtype={"series_id": str, "study_id": str, "patient_id": str})
    best_index, best_plan = float("inf"), float("inf")
    for _ in range(repeats):
        c0 = _cpu()
        files = source.index_files_csv(files_csv)
        c1 = _cpu()
        pr.plan_jobs(series, files, pcfg)
        c2 = _cpu()
        best_index, best_plan = min(best_index, c1 - c0), min(best_plan, c2 - c1)
    n_rows = sum(n for _, n in files.values())
    return {"files_index_cpu_s_per_file": best_index / n_rows, "plan_cpu_s_per_series": best_plan / len(series)}


def _native_voxels(series_csv: Path) -> dict:
    s = pd.read_csv(series_csv, dtype={"series_id": str})
    return dict(zip(s["series_id"], s["n_slices"].astype(int) * s["rows"].astype(int) * s["cols"].astype(int)))


PAPER = {"files": 200e6, "volumes": 5.24e6, "studies": 566_915}


def makespan(durations: list[float], nodes: int) -> float:
    """Wall time of independent jobs (one node each) on ``nodes`` nodes, longest first onto the least-loaded node."""
    load = [0.0] * max(1, nodes)
    for d in sorted(durations, reverse=True):
        i = min(range(len(load)), key=load.__getitem__)
        load[i] += d
    return max(load)


def project(
    m: dict,
    chunks: int,
    shards: dict,
    cores: int,
    voxels_per_file: float,
    test_share: float,
    val_studies: int,
    nodes: list[int],
) -> dict:
    """Paper-scale job durations (hours on one node of ``cores`` cores, the job's workers on every core) from the
    measured CPU seconds per unit, then node-hours and wall time of the data stages on each node count."""
    u, f, v = m["per_unit"], PAPER["files"], PAPER["volumes"]
    val_share = val_studies / PAPER["studies"]
    share = {"train": 1 - test_share - val_share, "val": val_share, "test": test_share}
    mvox_per_volume = f / v * voxels_per_file / 1e6
    per_volume = max(u["preprocess_cpu_s_per_volume"], u["preprocess_cpu_s_per_native_mvoxel"] * mvox_per_volume)
    h = 3600.0
    # every preprocess_shard job and the merge first index files.csv (one process) and plan every series (on the
    # job's cores, neurovfm.preprocess.run.plan_parallel)
    plan_h = (f * u["files_index_cpu_s_per_file"] + v * u["plan_cpu_s_per_series"] / cores) / h
    stages = {
        "ingest_walk": [f * u["walk_cpu_s_per_file"] / h],  # one process
        "ingest_headers": [f / chunks * u["header_cpu_s_per_file"] / cores / h] * chunks,
        "ingest (merge)": [f * u["merge_cpu_s_per_file"] / h],  # one process
        "preprocess_shard": [
            plan_h + v * share[sp] / n * per_volume / cores / h for sp, n in shards.items() for _ in range(n)
        ],
        "preprocess (merge)": [plan_h],
        "features_shard (1 encoder, CPU)": [
            v * share[sp] / n * u["features_tokens_per_volume_all_windows"] * u["features_cpu_s_per_token"] / cores / h
            for sp, n in shards.items()
            for _ in range(n)
        ],
    }
    out = {
        "assumptions": {
            "files": f,
            "volumes": v,
            "studies": PAPER["studies"],
            "ingest_chunks": chunks,
            "store_shards": shards,
            "cores_per_node": cores,
            "native_voxels_per_file": voxels_per_file,
            "test_share": test_share,
            "val_studies": val_studies,
            "preprocess_plan_h_per_job": plan_h,
            "preprocess_cpu_s_per_volume_used": per_volume,
        },
        "stages": {},
    }
    for name, jobs in stages.items():
        out["stages"][name] = {
            "jobs": len(jobs),
            "longest_job_h": max(jobs),
            "node_hours": sum(jobs),
            "wall_h": {n: makespan(jobs, n) for n in nodes},
        }
    out["ingest_merge_memory_gb"] = f * u["merge_traced_peak_bytes_per_file"] / 1e9
    out["ingest_walk_memory_gb"] = f * u["walk_traced_peak_bytes_per_file"] / 1e9
    out["storage_tb"] = {
        "header_chunks (private)": f * u["header_chunk_bytes_per_file"] / 1e12,
        "shards": v * u["shard_bytes_per_volume"] / 1e12,
        "features per encoder": v * u["features_tokens_per_volume_all_windows"] * u["feature_bytes_per_token"] / 1e12,
    }
    out["total"] = {
        "node_hours": sum(s["node_hours"] for s in out["stages"].values()),
        "wall_h": {n: sum(s["wall_h"][n] for s in out["stages"].values()) for n in nodes},
    }
    return out


def markdown(p: dict, nodes: list[int]) -> str:
    head = (
        "| stage | jobs | longest job (h) | node-hours | "
        + " | ".join(f"wall, {n} node{'s' * (n > 1)} (h)" for n in nodes)
        + " |"
    )
    rows = [head, "|" + "---|" * (4 + len(nodes))]
    for name, s in [*p["stages"].items(), ("**data stages**", {**p["total"], "jobs": "", "longest_job_h": None})]:
        longest = f"{s['longest_job_h']:.2f}" if s["longest_job_h"] is not None else ""
        walls = " | ".join(f"{s['wall_h'][n]:.2f}" for n in nodes)
        rows.append(f"| {name} | {s['jobs']} | {longest} | {s['node_hours']:.1f} | {walls} |")
    return "\n".join(rows)


def project_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description="paper-scale projection from a benchmarks/scale.py measurement")
    ap.add_argument("measured")
    ap.add_argument("--chunks", type=int, default=64, help="ingest.chunks (K)")
    ap.add_argument("--shards", default="train=10,val=1,test=1", help="store.shards")
    ap.add_argument("--cores", type=int, default=32, help="cores per node (each job takes one node)")
    ap.add_argument("--voxels-per-file", type=float, default=512 * 512, help="native pixels of one DICOM slice")
    ap.add_argument("--test-share", type=float, default=1 / 14, help="share of volumes in the prospective test year")
    ap.add_argument("--val-studies", type=int, default=2000)
    ap.add_argument("--nodes", default="1,10,50")
    ap.add_argument("--json", default=None, help="also write the projection here")
    a = ap.parse_args(argv)
    shards = {k: int(n) for k, n in (kv.split("=") for kv in a.shards.split(","))}
    nodes = [int(n) for n in a.nodes.split(",")]
    m = json.loads(Path(a.measured).read_text())
    p = project(m, a.chunks, shards, a.cores, a.voxels_per_file, a.test_share, a.val_studies, nodes)
    if a.json:
        Path(a.json).write_text(json.dumps(p, indent=1) + "\n")
    print(markdown(p, nodes))
    print(
        f"\nPython allocations: ingest_walk {p['ingest_walk_memory_gb']:.0f} GB, "
        f"ingest merge {p['ingest_merge_memory_gb']:.0f} GB"
    )
    print("storage (TB): " + ", ".join(f"{k} {v:.2f}" for k, v in p["storage_tb"].items()))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "project":
        return project_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--n-studies", type=int, default=40)
    ap.add_argument("--model", default="base", help="architecture of the random-weight encoder (a pretrain.models key)")
    ap.add_argument("--feature-split", default="val")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    cfg = copy.deepcopy(load_config(ROOT / "config.yaml"))
    # the paper's architectures (profiles/armis2/paper.yaml: small, medium, base) next to the demo's
    paper_models = yaml.safe_load((ROOT / "profiles" / "armis2" / "paper.yaml").read_text())["pretrain"]["models"]
    cfg["pretrain"]["models"] = {**cfg["pretrain"]["models"], **paper_models}
    cfg["pretrain"]["train"] = [args.model]
    cfg["synth"]["n_studies"] = args.n_studies
    cfg["ingest"]["chunks"] = 1
    cfg["features"]["progress_every_s"] = 0.0
    cfg = validate(cfg)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="neurovfm-scale-"))
    res, priv = work / "results", work / "private"
    export = res / "pacs_export"
    jobs = []
    if not (export / "dicom").is_dir():
        pipeline.synth(cfg, export, threads=2)

    lists = [priv / "ingest" / "lists" / "0-of-1.jsonl"]
    chunk = priv / "ingest" / "headers" / "0-of-1.pkl"
    jobs.append(timed("ingest_walk", pipeline.ingest_walk, cfg, export / "dicom", lists))
    n_files = jobs[-1]["result"]["n_files"]
    one_worker = {**cfg, "ingest": {**cfg["ingest"], "workers": 1}, "preprocess": {**cfg["preprocess"], "workers": 1}}
    jobs.append(timed("ingest_headers", pipeline.ingest_headers, one_worker, export / "dicom", lists[0], chunk, 1))
    jobs.append(timed("ingest", pipeline.ingest_merge, cfg, [chunk], export / "reports.csv", res / "ingest", priv))
    # the walk holds the sorted file list, the merge every header record's series state: Python's allocations
    walk_peak = traced_peak(pipeline.ingest_walk, cfg, export / "dicom", [work / "traced" / "list" / "0-of-1.jsonl"])
    merge_peak = traced_peak(pipeline.ingest_merge, cfg, [chunk], export / "reports.csv", work / "traced", priv / "t")
    series_csv, files_csv = res / "ingest" / "series.csv", priv / "files.csv"
    native = _native_voxels(series_csv)
    planning = plan_costs(series_csv, files_csv, cfg["preprocess"])

    shards_dir, parts = res / "shards", []
    for split, n in cfg["store"]["shards"].items():
        for s in range(n):
            part = shards_dir / "parts" / f"{split}-{s}.json"
            rec = timed(
                f"preprocess_shard {split}/{s}",
                pipeline.preprocess_shard,
                one_worker,
                series_csv,
                files_csv,
                export / "dicom",
                shards_dir,
                split,
                s,
                part,
                1,
            )
            side = json.loads((shards_dir / split / f"shard-{s:05d}.json").read_text())
            rec["units"] = {
                "volumes": len(side["volumes"]),
                "excluded": len(side["exclusions"]),
                "native_voxels": int(sum(native[v["series_id"]] for v in side["volumes"])),
                "shard_bytes": int(side["nbytes"]),
                "stored_tokens": int(sum(v["mask"]["n_foreground"] for v in side["volumes"])),
            }
            jobs.append(rec)
            parts.append(part)
    jobs.append(
        timed(
            "preprocess", pipeline.preprocess, one_worker, series_csv, files_csv, export / "dicom", shards_dir, 1, parts
        )
    )

    split = args.feature_split
    feats = res / "features" / "random"
    rec = timed(
        f"features_shard {split}/0",
        pipeline.features_shard,
        cfg,
        "random",
        split,
        0,
        shards_dir / split / "index.json",
        shards_dir / "train" / "stats.json",
        feats,
        feats / "parts" / f"{split}-0.json",
        None,
        1,
        "cpu",
    )
    index = json.loads((shards_dir / split / "index.json").read_text())
    sides = [json.loads((feats / split / f"chunk-{c['chunk']:05d}.json").read_text()) for c in rec["result"]["chunks"]]
    rec["units"] = {
        "volumes": sum(1 for v in index["volumes"] if v["shard"] == 0),
        "entries": sum(len(s["entries"]) for s in sides),
        "stored_tokens": sum(s["n_tokens"] for s in sides),
        "feature_bytes": sum(s["nbytes"] + s["coords_nbytes"] for s in sides),
    }
    jobs.append(rec)

    by = {j["job"]: j for j in jobs}
    pre = [j for j in jobs if j["job"].startswith("preprocess_shard")]
    vols = sum(j["units"]["volumes"] for j in pre)
    ingest_summary = json.loads((res / "ingest" / "summary.json").read_text())
    fj = by[f"features_shard {split}/0"]
    per_unit = {
        "walk_cpu_s_per_file": by["ingest_walk"]["cpu_s"] / n_files,
        "walk_wall_s_per_file": by["ingest_walk"]["wall_s"] / n_files,
        "walk_traced_peak_bytes_per_file": walk_peak / n_files,
        "header_cpu_s_per_file": by["ingest_headers"]["cpu_s"] / n_files,
        "header_wall_s_per_file": by["ingest_headers"]["wall_s"] / n_files,
        "header_chunk_bytes_per_file": chunk.stat().st_size / n_files,
        "merge_cpu_s_per_file": by["ingest"]["cpu_s"] / n_files,
        "merge_peak_rss_mb": by["ingest"]["peak_rss_mb"],
        "merge_traced_peak_bytes_per_file": merge_peak / n_files,
        **planning,
        "preprocess_cpu_s_per_volume": sum(j["cpu_s"] for j in pre) / vols,
        "preprocess_cpu_s_per_native_mvoxel": sum(j["cpu_s"] for j in pre)
        / (sum(j["units"]["native_voxels"] for j in pre) / 1e6),
        "shard_bytes_per_volume": sum(j["units"]["shard_bytes"] for j in pre) / vols,
        "stored_tokens_per_volume": sum(j["units"]["stored_tokens"] for j in pre) / vols,
        "preprocess_shard_peak_rss_mb": max(j["peak_rss_mb"] for j in pre),
        "features_cpu_s_per_token": fj["cpu_s"] / max(1, fj["units"]["stored_tokens"]),
        "features_tokens_per_volume_all_windows": fj["units"]["stored_tokens"] / max(1, fj["units"]["volumes"]),
        "feature_bytes_per_token": fj["units"]["feature_bytes"] / max(1, fj["units"]["stored_tokens"]),
        "features_shard_peak_rss_mb": fj["peak_rss_mb"],
    }
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    out = {
        "date": datetime.date.today().isoformat(),
        "commit": commit.strip(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "settings": {"n_studies": args.n_studies, "model": args.model, "feature_split": split, "workers": 1},
        "data": {
            "files": n_files,
            "volumes_ingested": ingest_summary.get("n_volumes", ingest_summary.get("volumes")),
            "volumes_written": vols,
            "studies": len(pd.read_csv(res / "ingest" / "studies.csv")),
        },
        "jobs": jobs,
        "per_unit": per_unit,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(per_unit, indent=1))


if __name__ == "__main__":
    main()
