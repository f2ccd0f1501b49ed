"""The scaling grid (Fig. 2b): nested data subsets, the grid's expansion into pretrain.models, the fits and their
intervals, and the workflow's grid target (a dry run of the small test DAG; fig2b from synthetic tables)."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from neurovfm.analysis.scaling import COLUMNS, ols_line, paired_mean_auroc, slope_interval
from neurovfm.config import ConfigError, default_config, load_config, prepared, validate
from neurovfm.jepa.subset import n_kept, restrict_dataset, select_studies, study_key, write_records
from neurovfm.jepa.toy import ToyVolumes
from neurovfm.scaling_grid import fraction_name, grid, grid_names, unimodal_pairs, with_grid

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------- data subsets


def _volumes(n_ct=200, n_mr=300, per_study=2):
    vols = []
    for mod, n in (("CT", n_ct), ("MR", n_mr)):
        for s in range(n):
            for k in range(per_study):
                vols.append({"series_id": f"{mod}{s}-{k}", "study_id": f"{mod.lower()}{s:04d}", "modality": mod})
    return vols


def _studies(vols, keep):
    return {vols[i]["study_id"] for i in keep}


def test_subsets_are_nested_and_keep_each_modality_share():
    vols = _volumes()
    subsets = {f: select_studies(vols, f, None, seed=7) for f in (0.05, 0.1, 0.25, 0.5, 1.0)}
    fracs = sorted(subsets)
    for small, large in zip(fracs, fracs[1:]):
        assert _studies(vols, subsets[small].keep) < _studies(vols, subsets[large].keep)
    for f, sub in subsets.items():
        assert len(sub.studies["CT"]) == n_kept(f, 200) == int(f * 200)
        assert len(sub.studies["MR"]) == int(f * 300)
        # whole studies: every volume of a kept study, in the split's order
        assert len(sub.keep) == 2 * (len(sub.studies["CT"]) + len(sub.studies["MR"]))
        assert sub.keep == sorted(sub.keep)
    assert subsets[1.0].is_everything and len(subsets[1.0].keep) == len(vols)


def test_subset_is_deterministic_and_keyed_by_the_seed_only():
    vols = _volumes()
    a = select_studies(vols, 0.25, None, seed=7)
    b = select_studies(list(reversed(vols)), 0.25, None, seed=7)  # the split's order does not matter
    assert a.studies == b.studies and a.digest() == b.digest()
    c = select_studies(vols, 0.25, None, seed=8)
    assert a.studies != c.studies
    # a study's rank does not depend on the other studies: dropping some keeps the order of the rest
    rest = [v for v in vols if v["study_id"] not in set(a.studies["CT"][:5])]
    d = select_studies(rest, 1.0, None, seed=7)
    assert d.studies["CT"][: len(a.studies["CT"]) - 5] == a.studies["CT"][5:]
    assert study_key("ct0001", 7) == study_key("ct0001", 7) != study_key("ct0001", 8)


def test_fractions_count_exactly():
    assert n_kept(0.29, 100) == 29  # 0.29 * 100 = 28.999999999999996 in floating point
    assert n_kept(0.05, 19) == 0 and n_kept(0.05, 20) == 1 and n_kept(1.0, 7) == 7


def test_modality_filter_keeps_one_modality():
    vols = _volumes()
    ct = select_studies(vols, 1.0, ["CT"], seed=1)
    assert set(ct.studies) == {"CT"} and {vols[i]["modality"] for i in ct.keep} == {"CT"}
    assert len(ct.keep) == 400
    mr = select_studies(vols, 0.5, ["MR"], seed=1)
    assert {vols[i]["modality"] for i in mr.keep} == {"MR"} and len(mr.studies["MR"]) == 150
    assert _studies(vols, mr.keep) <= _studies(vols, select_studies(vols, 0.5, None, seed=1).keep)


def test_a_fraction_that_keeps_no_study_is_a_clear_error():
    vols = _volumes(n_ct=10, n_mr=300)
    with pytest.raises(ConfigError, match=r"tiny-d5: data_fraction 0\.05 keeps none of the 10 CT studies"):
        select_studies(vols, 0.05, None, seed=0, model_name="tiny-d5")
    only_mr = [v for v in vols if v["modality"] == "MR"]
    with pytest.raises(ConfigError, match="modality CT is listed"):
        select_studies(only_mr, 1.0, ["CT"], seed=0)
    # the defaults (both modalities) accept a split without CT
    assert set(select_studies(only_mr, 1.0, None, seed=0).studies) == {"MR"}


def test_restricted_dataset_and_records(tmp_path):
    toy = ToyVolumes(n=12, grid=(4, 5, 5), seed=0, ct_every=2)
    before = {v["series_id"]: toy[i]["image"] for i, v in enumerate(toy.volumes)}
    sub = restrict_dataset(toy, {"encoder": "tiny", "data_fraction": 0.5, "modalities": ["MR"]}, seed=3)
    assert len(toy) == len(sub.keep) == 3 and {v["modality"] for v in toy.volumes} == {"MR"}
    for i, v in enumerate(toy.volumes):  # an item is still its own volume
        assert toy[i]["series_id"] == v["series_id"]
        assert np.array_equal(toy[i]["image"], before[v["series_id"]])
    write_records(tmp_path, sub)
    record = json.loads((tmp_path / "data.json").read_text())
    assert record["per_modality"]["MR"] == {"studies_available": 6, "studies_used": 3, "volumes_used": 3}
    assert record["per_modality"]["CT"]["studies_used"] == 0 and record["studies_used"] == 3
    table = pd.read_csv(tmp_path / "studies.csv")
    assert list(table.columns) == ["study_id", "modality", "rank"] and set(table["study_id"]) == set(sub.studies["MR"])


# ---------------------------------------------------------------------------------------------- grid expansion
NAME = re.compile(r"^(?!random$)(?!.*_vs_)(?!.*_categories$)[A-Za-z0-9_.-]+$")  # the schema's model names


def test_demo_grid_names_and_entries():
    cfg = load_config()
    models = grid(cfg)
    names = [m.name for m in models]
    assert names == ["micro-d25", "micro-d50", "micro", "tiny-d25", "tiny-d50", "tiny", "tiny-ct", "tiny-mri"]
    assert all(NAME.match(n) for n in names)
    table = cfg["pretrain"]["models"]
    assert table["tiny-d25"] == {**table["tiny"], "data_fraction": 0.25}
    assert table["tiny-ct"] == {**table["tiny"], "modalities": ["CT"]}
    assert table["tiny-mri"] == {**table["tiny"], "modalities": ["MR"]}
    assert "data_fraction" not in table["tiny"] and "data_fraction" not in table["micro"]
    assert unimodal_pairs(cfg) == {"ct": ("tiny", "tiny-ct"), "mri": ("tiny", "tiny-mri")}
    assert grid_names(cfg) == names
    assert cfg["pretrain"]["train"] == ["tiny"]  # the grid is not part of `all`


def test_grid_expansion_is_idempotent_and_revalidated():
    cfg = load_config()
    assert with_grid(cfg)["pretrain"]["models"] == cfg["pretrain"]["models"]
    assert prepared(validate(copy.deepcopy(cfg)))["pretrain"]["models"] == cfg["pretrain"]["models"]


def test_paper_grid():
    paper = load_config(ROOT / "profiles" / "armis2" / "paper.yaml")
    names = grid_names(paper)
    assert len(names) == 3 * 4 + 2
    assert {"small", "medium", "base", "small-d5", "medium-d10", "base-d25", "base-ct", "base-mri"} <= set(names)
    assert "tiny-d25" not in names and paper["pretrain"]["models"]["base-d5"]["data_fraction"] == 0.05
    assert fraction_name("small", 0.025) == "small-d2.5"


@pytest.mark.parametrize(
    "scaling, needle",
    [
        ({"models": ["nope"]}, "not a key of pretrain.models"),
        ({"models": ["tiny", "tiny_mae"]}, "both of size tiny"),
        ({"unimodal": "tiny_mae"}, "not one of scaling.models"),
        ({"models": ["tiny_hlip"], "unimodal": "tiny_hlip"}, "HLIP model"),
        ({"data_fractions": [0.1234567, 0.12345671]}, "same model name twice"),
    ],
)
def test_bad_grids_name_the_problem(scaling, needle):
    with pytest.raises(ConfigError, match=needle):
        default_config(scaling=scaling)


def test_generated_name_clash_is_an_error():
    with pytest.raises(ConfigError, match="pretrain.models.tiny-d25: the scaling grid generates"):
        default_config(
            pretrain={
                "models": {
                    "tiny-d25": {"encoder": "tiny", "predictor_dim": 96, "predictor_depth": 1, "predictor_heads": 4}
                }
            }
        )


def test_a_template_with_a_fraction_is_refused():
    with pytest.raises(ConfigError, match="sets data_fraction"):
        default_config(pretrain={"models": {"micro": {"data_fraction": 0.5}}})


# ---------------------------------------------------------------------------------------------- fits and intervals
def _toy_scores(n=60, k=5, models=3, seed=0):
    """Labels shared by ``models`` score matrices whose signal grows with the model index."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, k)) < 0.3).astype(int)
    labels[:3], labels[3:6] = 1, 0  # every class evaluable
    scores = [labels * (0.4 + 0.4 * j) + rng.normal(size=(n, k)) for j in range(models)]
    return scores, labels


def test_ols_line_matches_polyfit():
    rng = np.random.default_rng(1)
    x = np.log10([0.05, 0.1, 0.25, 1.0])
    y = rng.normal(size=(7, 4))
    slope, intercept = ols_line(x, y)
    for r in range(7):
        ref = np.polyfit(x, y[r], 1)
        assert slope[r] == pytest.approx(ref[0], abs=1e-12) and intercept[r] == pytest.approx(ref[1], abs=1e-12)
    assert np.isnan(ols_line([0.5], y[:, :1])[0]).all()  # one point: no line


def test_paired_slope_interval_matches_a_naive_bootstrap():
    from sklearn.metrics import roc_auc_score

    from neurovfm.eval.bootstrap import bootstrap_indices

    scores, labels = _toy_scores()
    fractions = [0.25, 0.5, 1.0]
    n_boot, seed, min_pos = 60, 11, 3
    point, reps, n_classes = paired_mean_auroc(scores, labels, n_boot, seed, min_pos)
    assert n_classes == labels.shape[1]
    # naive: the canonical resamples, one roc_auc_score per model, class and replicate, np.polyfit per replicate
    ref_point = [np.mean([roc_auc_score(labels[:, c], s[:, c]) for c in range(labels.shape[1])]) for s in scores]
    np.testing.assert_allclose(point, ref_point, atol=1e-12)
    slopes = []
    for r, idx in enumerate(bootstrap_indices(len(labels), n_boot, seed)):
        means = []
        for j, s in enumerate(scores):
            aucs = [
                roc_auc_score(labels[idx, c], s[idx, c])
                for c in range(labels.shape[1])
                if 0 < labels[idx, c].sum() < len(idx)
            ]
            means.append(np.mean(aucs))
            assert reps[r, j] == pytest.approx(means[-1], abs=1e-9)
        slopes.append(np.polyfit(np.log10(fractions), means, 1)[0])
    lo, hi = slope_interval(fractions, reps, alpha=0.05)
    assert (lo, hi) == pytest.approx(tuple(np.percentile(slopes, [2.5, 97.5])), abs=1e-9)
    assert 0 < lo < hi  # the signal grows with the fraction


# ---------------------------------------------------------------------------------------------- the workflow
def _write_grid_tables(results, cfg):
    """Predictions, thresholds and the diagnosis and comparison tables of the demo grid's models, from synthetic
    scores (no training): the probes' files the workflow's scaling_table rule reads."""
    from neurovfm import pipeline
    from neurovfm.labels.ontology import load_ontology
    from neurovfm.probes.predictions import MODALITIES

    rng = np.random.default_rng(5)
    n = 50
    strength = {m.name: 0.3 + 0.5 * m.data_fraction + (0.2 if m.size == "tiny" else 0) for m in grid(cfg)}
    for mod, code in MODALITIES.items():
        names = load_ontology(code).names[:6]
        y = (rng.random((n, len(names))) < 0.3).astype(int)
        y[:3], y[3:6] = 1, 0
        for m in grid(cfg):
            s = 1 / (1 + np.exp(-(y * strength[m.name] * 2 + rng.normal(size=y.shape))))
            frame = {"study_id": [f"s{i:03d}" for i in range(n)], "split": ["test"] * n}
            for j, c in enumerate(names):
                frame.update({f"label:{c}": y[:, j], f"logit:{c}": np.log(s[:, j] / (1 - s[:, j]))})
                frame.update({f"prob:{c}": s[:, j], f"pred:{c}": (s[:, j] > 0.5).astype(int)})
            out = results / "probes" / m.name / mod
            out.mkdir(parents=True)
            pd.DataFrame(frame).to_csv(out / "predictions.csv", index=False)
            pd.DataFrame({"label": names, "threshold": 0.5}).to_csv(out / "thresholds.csv", index=False)
            tables = results / "tables"
            pipeline.diagnosis_table(
                cfg,
                mod,
                out / "predictions.csv",
                out / "thresholds.csv",
                tables / f"diagnosis_{mod}_{m.name}.csv",
                tables / f"diagnosis_{mod}_{m.name}_categories.csv",
            )
    for mod, (a, b) in unimodal_pairs(cfg).items():
        pipeline.encoder_comparison(
            cfg,
            mod,
            a,
            b,
            results / "probes" / a / mod / "predictions.csv",
            results / "probes" / b / mod / "predictions.csv",
            results / "tables" / f"diagnosis_{mod}_{a}_vs_{b}.csv",
        )


EVAL = {"eval": {"n_boot": 100, "alpha": 0.05, "min_pos": 2, "seed": None}}


def test_scaling_table_and_figure_from_synthetic_tables(tmp_path):
    from neurovfm import pipeline

    cfg = default_config(probes=EVAL)
    results = tmp_path / "results" / cfg["run"]
    _write_grid_tables(results, cfg)
    out = results / "tables" / "scaling.csv"
    pipeline.scaling_table(cfg, results, out)
    table = pd.read_csv(out)
    assert list(table.columns) == COLUMNS
    points = table[table["section"] == "point"]
    assert len(points) == 6 * 2 + 2 and set(points["modalities"]) == {"CT+MR", "CT", "MR"}
    fits = table[table["section"] == "fit"]
    assert sorted(zip(fits["size"], fits["modality"])) == [
        ("micro", "ct"),
        ("micro", "mri"),
        ("tiny", "ct"),
        ("tiny", "mri"),
    ]
    assert (fits["status"] == "ok").all() and (fits["slope"] > 0).all()
    assert (fits["slope_lo"] <= fits["slope"]).all() and (fits["slope"] <= fits["slope_hi"]).all()
    uni = table[table["section"] == "unimodal"].set_index("modality")
    assert uni.loc["ct", "compared_with"] == "tiny-ct" and uni.loc["mri", "compared_with"] == "tiny-mri"
    assert (table.loc[table["size"] == "tiny", "params"] > table.loc[table["size"] == "micro", "params"].max()).all()
    pipeline.fig2b(cfg, out, results / "figures" / "fig2b.png")
    for ext in ("png", "pdf", "csv"):
        assert (results / "figures" / f"fig2b.{ext}").stat().st_size > 0
    # a table that does not match its predictions (stale, or other settings) is refused
    stale = results / "tables" / "diagnosis_ct_micro-d25_categories.csv"
    t = pd.read_csv(stale)
    t.loc[t["category"] == "all", "auroc"] += 0.01
    t.to_csv(stale, index=False)
    with pytest.raises(ValueError, match="stale"):
        pipeline.scaling_table(cfg, results, out)


def _snakemake(*args, cwd=ROOT):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def test_the_scaling_target_resolves_to_the_grids_pretraining_jobs():
    """A dry run of the small test DAG: `scaling` pretrains exactly the grid's models, probes the unimodal ones on
    their own modality only, and is not part of `all`."""
    test = ["--directory", ".test", "--configfile", ".test/config/config.yaml", "-n", "--forceall", "--cores", "1"]
    res = _snakemake(*test, "scaling")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    jobs = re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    wildcards: (.*)$", res.stdout, flags=re.M)
    pretrained = {w.split("=", 1)[1] for rule, w in jobs if rule == "pretrain"}
    cfg = load_config(ROOT / ".test" / "config" / "config.yaml")
    assert (
        pretrained
        == set(grid_names(cfg))
        == {
            "micro-d25",
            "micro-d50",
            "micro",
            "tiny-d25",
            "tiny-d50",
            "tiny",
            "tiny-ct",
            "tiny-mri",
        }
    )
    probed = set()
    for rule, w in jobs:
        if rule == "probe":
            kv = dict(p.split("=", 1) for p in w.split(", "))
            probed.add(f"{kv['encoder']}/{kv['modality']}")
    assert "tiny-ct/ct" in probed and "tiny-ct/mri" not in probed
    assert "tiny-mri/mri" in probed and "tiny-mri/ct" not in probed and "micro-d25/mri" in probed
    assert "tables/diagnosis_ct_tiny_vs_tiny-ct.csv" in res.stdout
    everything = _snakemake(*test, "all")
    assert everything.returncode == 0 and "tiny-d25" not in everything.stdout and "fig2b" not in everything.stdout


def test_the_paper_grid_on_the_slurm_profile():
    """profiles/armis2 (paper.yaml): 14 pretraining jobs (ViT-S/M/B x 4 fractions, base-ct, base-mri), each with the
    pretrain rule's GPU resources."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROVFM_")}
    cmd = [sys.executable, "-m", "snakemake", "-n", "--profile", "profiles/armis2", "scaling"]
    res = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"}, timeout=300
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    blocks = re.findall(r"^rule pretrain:\n((?:    .*\n)+)", res.stdout, flags=re.M)
    assert len(blocks) == 14 and all("gpu=8" in b for b in blocks)
    assert {"model=base-d5", "model=base-mri", "model=small"} <= set(re.findall(r"model=[\w.-]+", "".join(blocks)))


def test_fig2b_rules_run_on_synthetic_tables(tmp_path):
    """The workflow's scaling_table and fig2b rules, run by snakemake on the grid's tables made from synthetic
    scores (no pretraining or probes: --allowed-rules keeps those files as given)."""
    overlay = tmp_path / "eval.yaml"
    overlay.write_text(yaml.safe_dump({"probes": EVAL}))
    cfg = default_config(probes=EVAL)
    results = tmp_path / "results" / cfg["run"]
    _write_grid_tables(results, cfg)
    run = _snakemake(
        "--directory",
        str(tmp_path),
        "--configfile",
        str(overlay),
        "--allowed-rules",
        "scaling_table",
        "fig2b",
        "scaling",
        "--cores",
        "1",
        "scaling",
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for name in ("tables/scaling.csv", "figures/fig2b.png", "figures/fig2b.pdf", "figures/fig2b.csv"):
        assert (results / name).stat().st_size > 0, name
    table = pd.read_csv(results / "figures" / "fig2b.csv")
    assert set(table["section"]) == {"point", "fit", "unimodal"}


def test_a_shard_store_restricted_to_one_modality(tmp_path):
    """The real dataset (shards on disk): items of the kept volumes, no other modality, even inside a study."""
    from dinov2_fixtures import write_train

    from neurovfm.store.dataset import VolumeDataset

    data = VolumeDataset(write_train(tmp_path, n=8))  # studies of one MRI and one CT volume each
    sub = restrict_dataset(data, {"encoder": "tiny", "modalities": ["CT"]}, seed=0)
    assert len(data) == 4 == len(sub.keep) and {v["modality"] for v in data.volumes} == {"CT"}
    for i, v in enumerate(data.volumes):
        item = data[i]
        assert item["series_id"] == v["series_id"] and item["modality"] == "CT"
        assert data.reader.position(v["series_id"]) == i


def test_pretraining_sees_only_its_subset_and_records_it(tmp_path):
    """train(): a model with data_fraction and modalities trains on those studies only and says which."""
    from neurovfm.jepa.train import train

    model = {"encoder": "tiny", "predictor_dim": 48, "predictor_depth": 1, "predictor_heads": 2}
    cfg = default_config(
        pretrain={
            "models": {"t-half-mr": {**model, "data_fraction": 0.5, "modalities": ["MR"]}},
            "train": ["t-half-mr"],
            "steps": 2,
            "batch_size": 2,
            "checkpoint_every": 2,
            "progress_every_s": 1000,
        }
    )
    train(cfg, "t-half-mr", ToyVolumes(n=12, grid=(4, 5, 5), seed=0), tmp_path, threads=1)
    record = json.loads((tmp_path / "data.json").read_text())
    assert record["per_modality"]["MR"]["studies_used"] == 3 and record["volumes_used"] == 3
    studies = set(pd.read_csv(tmp_path / "studies.csv")["study_id"])
    assert len(studies) == 3
    samples = pd.read_csv(tmp_path / "context_fractions.csv")
    assert set(samples["modality"]) == {"MR"} and len(samples) == 4  # 2 steps x 2 volumes, MRI only
