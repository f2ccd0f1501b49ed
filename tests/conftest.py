"""Shared fixtures. The embedded synthetic health system is the fixture: a small export is written
once per test session and run through the real pipeline steps."""

import copy
from pathlib import Path

import pytest

from neurovfm import pipeline
from neurovfm.config import load_config, validate

ROOT = Path(__file__).resolve().parent.parent


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
