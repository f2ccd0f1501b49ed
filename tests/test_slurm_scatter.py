"""Failure isolation of the scattered data stages on the real SLURM test cluster (issue 21).

The demo's data stages (synth, ingest walk + K = 4 header chunks + merge, one preprocessing job per shard +
merge, one feature job per shard with the random encoder + index merge) go through sbatch with
profiles/armis2. One header-chunk job is cancelled with scancel while it runs, in a run without retries
(`--retries 0 --keep-going`): the run fails, the other chunks finish. The rerun submits that chunk alone (no
walk, no other chunk), then the merges and everything after them; the final outputs are byte-identical to a
local run with K = 1. (The profile's own retries of a cancelled job are tested in test_slurm_cluster.py.)
"""

import subprocess
import time
from pathlib import Path

import pytest
import yaml

from test_slurm_cluster import FAST_STATUS, ROOT, _snakemake, _submissions, _wait_for_accounting, slurm_cluster

assert slurm_cluster  # the session fixture of test_slurm_cluster.py (starts or reuses the cluster)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

RUN = "scattertest"
SMALL = {
    "run": RUN,
    "input": {"kind": "dicom", "dicom_dir": None, "reports_csv": None},
    "synth": {"n_studies": 6, "mr_matrix": [64], "ct_matrix": [64]},
    "splits": {"val_per_modality": 1},
    "store": {"shards": {"train": 2, "val": 1, "test": 1}},
    "pretrain": {"train": ["tiny"]},  # the random encoder's architecture: the demo's tiny ViT (a CPU job here)
}
SPLITS = ("train", "val", "test")
TARGETS = [
    f"results/{RUN}/ingest/series.csv",
    *[f"results/{RUN}/shards/{s}/index.json" for s in SPLITS],
    *[f"results/{RUN}/features/random/{s}/index.json" for s in SPLITS],
]
# CPU features compare bit for bit at one torch thread (with 2, a few float16 values differed by one unit between
# two runs on the same machine); --set-threads on the command line replaces the profile's set-threads
ONE_THREAD = ["--set-threads", "features_shard=1"]
COMPARED = ("ingest", "shards", "features")  # results/{run}/... compared byte for byte (logs and timings aside)


def _workflow(dest: Path, chunks: int) -> Path:
    import shutil

    dest.mkdir(parents=True)
    for name in ("Snakefile", "config.yaml"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "workflow", dest / "workflow", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "profiles", dest / "profiles", ignore=shutil.ignore_patterns("testcluster"))
    (dest / "small.yaml").write_text(yaml.safe_dump({**SMALL, "ingest": {"chunks": chunks}}))
    return dest


def _state(env: dict, slurm_id: str) -> str:
    res = subprocess.run(["squeue", "-h", "-j", slurm_id, "-o", "%T"], capture_output=True, text=True, env=env)
    return res.stdout.strip()


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for part in COMPARED
        for p in sorted((root / part).rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory):
    base = tmp_path_factory.mktemp("slurm-scatter")
    env = slurm_cluster["env"]
    local, remote = _workflow(base / "local", 1), _workflow(base / "slurm", 4)
    rc, out = _snakemake(
        [*TARGETS, "--profile", "profiles/local", "--configfile", "small.yaml", *ONE_THREAD],
        cwd=local,
        env=env,
        timeout=600,
    )
    assert rc == 0, f"the local K=1 run failed, nothing to compare:\n{out[-6000:]}"
    cancelled: list[tuple[str, Path]] = []

    def cancel_one_running_chunk(output: str):
        if cancelled:
            return
        for rule, slurm_id, log in _submissions(output):
            if rule == "ingest_headers" and _state(env, slurm_id) == "RUNNING":
                time.sleep(1)  # well inside the job (it takes several seconds to start Python and read)
                subprocess.run(["scancel", slurm_id], env=env, check=True)
                cancelled.append((slurm_id, log))
                return

    args = [
        *TARGETS,
        "--profile",
        "profiles/armis2",
        *FAST_STATUS,
        "--configfile",
        "profiles/armis2/paper.yaml",
        "small.yaml",
        *ONE_THREAD,
    ]
    rc1, out1 = _snakemake(
        [*args, "--retries", "0", "--keep-going"], cwd=remote, env=env, timeout=900, on_running=cancel_one_running_chunk
    )
    heads = remote / "private" / RUN / "ingest" / "headers"
    after_first = {
        "chunks": sorted(p.name for p in heads.iterdir()),
        "merged": (remote / "private" / RUN / "files.csv").exists(),
    }
    rc2, out2 = _snakemake(args, cwd=remote, env=env, timeout=900)
    return {
        "local": local / "results" / RUN,
        "slurm": remote / "results" / RUN,
        "private": remote / "private" / RUN,
        "first": (rc1, out1),
        "rerun": (rc2, out2),
        "cancelled": cancelled,
        "after_first": after_first,
        "env": env,
    }


def test_cancelled_chunk_fails_the_first_run_alone(runs):
    rc, out = runs["first"]
    assert runs["cancelled"], "no ingest_headers job was seen running:\n" + out[-4000:]
    assert rc != 0, out[-4000:]
    slurm_id, log = runs["cancelled"][0]
    chunk = log.parent.name  # .snakemake/slurm_logs/rule_ingest_headers/<chunk>/<jobid>.log
    # the other chunks finished (--keep-going); the cancelled one left nothing, not even a temporary file
    done = runs["after_first"]["chunks"]
    assert done == sorted(f"{k}-of-4.pkl" for k in range(4) if str(k) != chunk), done
    assert not runs["after_first"]["merged"]
    subs = _submissions(out)
    assert sum(r == "ingest_headers" for r, _, _ in subs) == 4 and "ingest" not in {r for r, _, _ in subs}
    table = _wait_for_accounting(runs["env"], [slurm_id])
    assert table[slurm_id][0].split()[0] == "CANCELLED", table


def test_rerun_redoes_only_the_missing_chunk(runs):
    rc, out = runs["rerun"]
    assert rc == 0, out[-6000:]
    subs = _submissions(out)
    chunks = [log.parent.name for r, _, log in subs if r == "ingest_headers"]
    assert chunks == [runs["cancelled"][0][1].parent.name], chunks
    rules = [r for r, _, _ in subs]
    assert "ingest_walk" not in rules and "synth" not in rules
    assert rules.count("preprocess_shard") == 4 and rules.count("features_shard") == 4, rules
    table = _wait_for_accounting(runs["env"], [j for _, j, _ in subs])
    assert all(table[j][0] == "COMPLETED" for _, j, _ in subs), table


def test_outputs_equal_the_local_one_chunk_run(runs):
    assert runs["rerun"][0] == 0, runs["rerun"][1][-4000:]
    local, remote = _files(runs["local"]), _files(runs["slurm"])
    assert sorted(local) == sorted(remote)
    assert any(k.startswith("features/random/train/chunk-") for k in local), sorted(local)[:20]
    different = [k for k in local if local[k] != remote[k]]
    assert not different, f"K=4 through SLURM and K=1 locally differ in {different}"
