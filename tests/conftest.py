"""Shared fixtures. The embedded synthetic health system is the fixture: a small export is written
once per test session and run through the real pipeline steps."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from neurovfm import pipeline
from neurovfm.config import load_config, validate

ROOT = Path(__file__).resolve().parent.parent

# The small test DAG (.test/config/config.yaml, snakemake-workflows' .test/ convention): every rule of `all` and the
# model bundle, as .ci/checks.sh builds it (and times it) before pytest; here the same command then has nothing to do.
TEST_DIR = ROOT / ".test"
TEST_DAG = ["--profile", "profiles/local", "--directory", ".test", "--configfile", ".test/config/config.yaml"]
TEST_RUN = yaml.safe_load((ROOT / "config.yaml").read_text())["run"]  # .test/config/config.yaml keeps the run name
TEST_TARGETS = ["all", f"results/{TEST_RUN}/bundle/MODEL_CARD.md"]
TEST_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_dag_snakemake(*args, timeout=1200) -> subprocess.CompletedProcess:
    """snakemake on the small test DAG (from the checkout's root, one thread per job)."""
    cmd = [sys.executable, "-m", "snakemake", *TEST_DAG, *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=TEST_ENV, timeout=timeout)


test_dag_snakemake.__test__ = False  # a helper, not a test


@pytest.fixture(scope="session")
def small_dag() -> dict:
    """The small test DAG, built if it is not (about 5 minutes on 2 cores). Its folders."""
    run = test_dag_snakemake("--cores", "2", *TEST_TARGETS)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return {
        "dir": TEST_DIR,
        "run": TEST_RUN,
        "results": TEST_DIR / "results" / TEST_RUN,
        "private": TEST_DIR / "private" / TEST_RUN,
    }


def small_config(tmp: Path, **synth) -> dict:
    cfg = copy.deepcopy(load_config(ROOT / "config.yaml"))
    cfg["paths"] = {"results": str(tmp / "results"), "private": str(tmp / "private")}
    cfg["synth"].update({"n_studies": 24, "mr_matrix": [64], "ct_matrix": [64], **synth})
    cfg["splits"]["val_per_modality"] = 2
    return validate(cfg)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """A tiny end-to-end run: synth -> ingest -> labels -> extractor scoring. Returns a dict of paths."""
    tmp = tmp_path_factory.mktemp("demo")
    cfg = small_config(tmp)
    res = Path(cfg["paths"]["results"]) / cfg["run"]
    priv = Path(cfg["paths"]["private"]) / cfg["run"]
    export = res / "pacs_export"
    pipeline.synth(cfg, export, threads=2)
    summary = pipeline.ingest(cfg, export / "dicom", export / "reports.csv", res / "ingest", priv, threads=2)
    pipeline.labels(cfg, priv / "reports.jsonl", res / "ingest" / "studies.csv", res / "labels", priv)
    pipeline.extractor_eval(
        cfg, res / "labels", export / "truth", res / "ingest" / "studies.csv", res / "labels" / "extractor_eval.csv"
    )
    return {"cfg": cfg, "results": res, "private": priv, "export": export, "ingest_summary": summary}


@pytest.fixture()
def one_thread():
    """Bitwise-equal reruns (resume, refits) need a fixed reduction order: multi-threaded BLAS may split sums
    differently when the machine is busy, so such tests run torch on one thread."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
