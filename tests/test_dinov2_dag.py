"""DINOv2 on slices is an {encoder} of the DAG: on the small test configuration with tiny_dinov2 listed in
pretrain.train (a second --configfile), a dry run of `all` plans its pretraining on the train shards, its slice-wise
features from its encoder.pt, its probes and its comparison with random weights; the analyses that re-encode
volumes with a 3D encoder are given the 3D models only, as docs/pretraining.md says to."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
RUN_FILE = """pretrain:
  train: [tiny_v1-a.b, tiny_dinov2]
analysis:
  laterality: {encoders: [tiny_v1-a.b]}
  anatomy: {encoders: [tiny_v1-a.b, random]}
  external: {encoders: [tiny_v1-a.b, random]}
"""


def test_dry_run_of_all_plans_pretrain_features_and_probes_for_tiny_dinov2(tmp_path):
    test_cfg = yaml.safe_load((ROOT / ".test" / "config" / "config.yaml").read_text())
    run = test_cfg.get("run") or yaml.safe_load((ROOT / "config.yaml").read_text())["run"]
    assert "tiny_dinov2" not in test_cfg["pretrain"]["train"]  # listed by the second file only
    run_file = tmp_path / "with_dinov2.yaml"
    run_file.write_text(RUN_FILE)
    cmd = [sys.executable, "-m", "snakemake", "-n", "--forceall", "--cores", "1", "--directory", ".test"]
    cmd += ["--configfile", ".test/config/config.yaml", str(run_file), "--", "all"]
    dry = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=300)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    planned = {}
    for job in re.split(r"\n(?=(?:local)?rule \w+:)", dry.stdout):
        rule = re.match(r"(?:local)?rule (\w+):", job)
        if rule and "tiny_dinov2" in job:
            planned.setdefault(rule.group(1), []).append(job)
    assert {"pretrain", "features_shard", "features", "probe", "diagnosis_table"} <= set(planned), sorted(planned)
    assert not {"laterality", "anatomy", "external_benchmark"} & set(planned)
    pretrain = planned["pretrain"][0]
    inputs = re.search(r"input: (.*)", pretrain).group(1).split(", ")
    assert f"results/{run}/shards/train/index.json" in inputs
    assert not any("/val/" in p or "/test/" in p or "reports" in p for p in inputs)  # train shards only
    assert "wildcards: model=tiny_dinov2" in pretrain
    splits = set()
    for job in planned["features_shard"]:  # every split's shards through its encoder.pt
        inputs = re.search(r"input: (.*)", job).group(1).split(", ")
        assert f"results/{run}/pretrain/tiny_dinov2/encoder.pt" in inputs
        splits |= {s for s in ("train", "val", "test") if f"shards/{s}/index.json" in " ".join(inputs)}
    assert splits == {"train", "val", "test"}
    probes = " ".join(planned["probe"])
    for modality in ("ct", "mri"):
        assert f"results/{run}/probes/tiny_dinov2/{modality}/" in probes
        assert f"tables/diagnosis_{modality}_tiny_dinov2_vs_random.csv" in dry.stdout
