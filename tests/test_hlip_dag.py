"""HLIP is an {encoder} of the DAG: on the small test configuration, a dry run of its diagnosis table plans its
pretraining (reading the private reports, as its text.source says), its features from its encoder.pt and its
probe."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_dry_run_plans_pretrain_features_and_probe_for_tiny_hlip():
    run = yaml.safe_load((ROOT / "config.yaml").read_text())["run"]
    target = f"results/{run}/tables/diagnosis_ct_tiny_hlip.csv"
    cmd = [sys.executable, "-m", "snakemake", "-n", "--forceall", "--cores", "1", "--directory", ".test"]
    cmd += ["--configfile", ".test/config/config.yaml", "--", target]
    dry = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=300)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    jobs = re.split(r"\n(?=(?:local)?rule \w+:)", dry.stdout)
    planned = {}
    for job in jobs:
        rule = re.match(r"(?:local)?rule (\w+):", job)
        if rule and "tiny_hlip" in job:
            planned.setdefault(rule.group(1), []).append(job)
    assert {"pretrain", "features_shard", "features", "probe", "diagnosis_table"} <= set(planned), sorted(planned)
    pretrain = planned["pretrain"][0]
    inputs = re.search(r"input: (.*)", pretrain).group(1).split(", ")
    assert f"private/{run}/reports.jsonl" in inputs and f"results/{run}/shards/train/index.json" in inputs
    for job in planned["features_shard"]:  # the features read its encoder.pt
        assert f"results/{run}/pretrain/tiny_hlip/encoder.pt" in re.search(r"input: (.*)", job).group(1).split(", ")
