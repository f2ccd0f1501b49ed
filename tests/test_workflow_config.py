"""The workflow's skeleton: schema validation, profiles dry-run, CLI help, atomic outputs."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from neurovfm.config import ConfigError, load_config, validate
from neurovfm.utils.atomic import atomic_dir, atomic_open

ROOT = Path(__file__).resolve().parent.parent


def _snakemake(*args, env=None, cwd=ROOT):
    cmd = [sys.executable, "-m", "snakemake", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def test_default_config_is_valid():
    cfg = load_config(ROOT / "config.yaml")
    assert cfg["run"] == "demo"


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda c: c["synth"].__setitem__("n_studis", 3), "n_studis"),
        (lambda c: c["synth"].__setitem__("n_studies", "many"), "synth.n_studies"),
        (lambda c: c["splits"].__setitem__("cutoff", "June 2023"), "splits.cutoff"),
        (lambda c: c.__setitem__("colour", "red"), "colour"),
        (lambda c: c["labels"].__setitem__("extractor", "regex"), "labels.extractor"),
        (lambda c: c["pretrain"].__setitem__("export", "ema"), "pretrain.export"),
        (lambda c: c["pretrain"].pop("export"), "export"),
    ],
)
def test_schema_names_the_bad_key(mutate, needle):
    cfg = copy.deepcopy(load_config(ROOT / "config.yaml"))
    mutate(cfg)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert needle in str(err.value)


def test_snakemake_rejects_bad_config_at_start(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"ingest": {"min_slices": "ten"}}))
    res = _snakemake("all", "-n", "--cores", "1", "--configfile", str(bad))
    assert res.returncode != 0
    assert "min_slices" in res.stdout + res.stderr


def test_local_profile_dry_run():
    res = _snakemake("-n", "--forceall", "--profile", "profiles/local", "all")
    assert res.returncode == 0, res.stderr
    for rule in ("synth", "ingest", "labels", "extractor_eval"):
        assert rule in res.stdout


def test_armis2_profile_dry_run_without_slurm():
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROVFM_")}
    res = _snakemake("-n", "--forceall", "--profile", "profiles/armis2", "all", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    # the paper config reads a real export: no synthetic export, no self-scoring
    assert "ingest" in res.stdout and "synth" not in res.stdout.split("Job stats")[-1]


@pytest.mark.parametrize("sub", ["synth", "ingest", "labels", "check-config"])
def test_cli_help(sub):
    res = subprocess.run([sys.executable, "-m", "neurovfm.cli", sub, "--help"], capture_output=True, text=True)
    assert res.returncode == 0
    assert "--config" in res.stdout


def test_cli_set_override_is_validated():
    res = subprocess.run(
        [sys.executable, "-m", "neurovfm.cli", "check-config", "--set", "synth.n_studies=abc"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert res.returncode == 2
    assert "synth.n_studies" in res.stderr


def test_atomic_open_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "table.csv"
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write("half a table")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "export"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    assert (target / "a").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "b").write_text("2")
            raise RuntimeError("killed")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


@pytest.mark.parametrize("name", ["random", "a_vs_b", "vit_categories", "bad name", "x/y"])
def test_model_names_that_would_break_file_names_are_rejected(name):
    cfg = copy.deepcopy(load_config(ROOT / "config.yaml"))
    cfg["pretrain"]["models"][name] = cfg["pretrain"]["models"]["tiny"]
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert "pretrain.models" in str(err.value)


def test_model_names_with_underscores_dashes_and_dots_resolve_in_the_dag(tmp_path):
    """Every rule of `all` resolves for models named like this (the test DAG runs one of them end to end)."""
    names = ["vit_s-2.1", "vit_s"]  # one name a prefix of the other: wildcards must match whole names
    model = yaml.safe_load((ROOT / "config.yaml").read_text())["pretrain"]["models"]["tiny"]
    overlay = tmp_path / "names.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {"pretrain": {"models": {n: model for n in names}, "train": names}, "probes": {"encoders": None}}
        )
    )
    res = _snakemake("all", "-n", "--forceall", "--cores", "1", "--configfile", str(overlay))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    for name in names:
        for path in (
            f"pretrain/{name}/encoder.pt",
            f"probes/{name}/ct/probe.pt",
            f"tables/diagnosis_mri_{name}.csv",
            f"tables/diagnosis_mri_{name}_categories.csv",
            f"tables/diagnosis_ct_{name}_vs_random.csv",
        ):
            assert path in out, path
    assert "reportgen/vit_s-2.1/n" in out
