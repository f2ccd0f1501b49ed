"""Fig. 2a with every encoder: each pretrained model is named with its method in tables and figures; the
slice-wise encoders (DINOv2 on slices, public 2D encoders) are kept out of the analyses that re-encode volumes at
token level unless listed there; and a dry run of the demo's `all` plans every comparison encoder (Vol-JEPA,
VideoMAE, HLIP, DINOv2-slices, random weights) through pretraining, features, probes, Fig. 2a and the paired
tables of each against random weights and against the main model."""

import os
import re
import subprocess
import sys
from pathlib import Path

from neurovfm import pipeline
from neurovfm.config import default_config, load_config

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_each_pretrained_model_is_named_with_its_method():
    cfg = default_config()
    labels = {e: pipeline.encoder_label(cfg, e) for e in ("tiny", "tiny_mae", "tiny_hlip", "tiny_dinov2", "random")}
    assert labels == {
        "tiny": "tiny (Vol-JEPA)",
        "tiny_mae": "tiny_mae (VideoMAE)",
        "tiny_hlip": "tiny_hlip (HLIP)",
        "tiny_dinov2": "tiny_dinov2 (DINOv2 on slices)",
        "random": "random",
    }


def test_slice_wise_encoders_are_not_volumetric():
    cfg = default_config()
    assert [e for e in ("random", "tiny", "tiny_mae", "tiny_hlip") if pipeline.is_volumetric(cfg, e)] == [
        "random",
        "tiny",
        "tiny_mae",
        "tiny_hlip",
    ]
    assert not pipeline.is_volumetric(cfg, "tiny_dinov2")
    assert not pipeline.is_volumetric(cfg, "no_such_model")
    cfg["encoders"] = {"pub": {"kind": "dinov3", "path": None}}  # a public 2D encoder: slice-wise
    assert not pipeline.is_volumetric(cfg, "pub")


def test_token_level_analyses_default_to_the_volumetric_probe_encoders():
    cfg = default_config(
        probes={"encoders": ["tiny", "tiny_dinov2", "tiny_mae", "random"]},
        pretrain={"train": ["tiny", "tiny_dinov2"]},
    )
    for section in ("anatomy", "external"):
        assert pipeline.analysis_encoders(cfg, section) == ["tiny", "tiny_mae", "random"]
    assert pipeline.laterality_encoders(cfg) == ["tiny"]
    # an explicit list is taken as it is
    cfg["analysis"]["anatomy"]["encoders"] = ["tiny_dinov2"]
    assert pipeline.analysis_encoders(cfg, "anatomy") == ["tiny_dinov2"]


def test_the_demos_all_plans_every_comparison_encoder_and_both_paired_tables():
    cfg = load_config()
    encoders = cfg["probes"]["encoders"]
    assert encoders[0] in cfg["pretrain"]["train"] and encoders[-1] == "random"
    objectives = {cfg["pretrain"]["models"][e].get("objective", "vjepa") for e in encoders[:-1]}
    assert objectives == {"vjepa", "videomae", "hlip", "dinov2"}
    cmd = [sys.executable, "-m", "snakemake", "-n", "--forceall", "--cores", "1", "all"]
    dry = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=300)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    pretrained = set(re.findall(r"results/demo/pretrain/([^/\s]+)/encoder\.pt", dry.stdout))
    assert set(encoders[:-1]) <= pretrained
    for e in encoders:
        for m in ("ct", "mri"):
            assert f"results/demo/probes/{e}/{m}/predictions.csv" in dry.stdout, (e, m)
    for m in ("ct", "mri"):
        for a in encoders[:-1]:
            assert f"results/demo/tables/diagnosis_{m}_{a}_vs_random.csv" in dry.stdout, (a, m)
        for a in encoders[1:-1]:
            assert f"results/demo/tables/diagnosis_{m}_{a}_vs_{encoders[0]}.csv" in dry.stdout, (a, m)
    assert "results/demo/figures/ed_encoder_comparison.png" in dry.stdout
    # the token-level analyses re-encode volumes with the 3D encoders only
    anatomy = re.search(r"rule anatomy:\n\s+input: ([^\n]+)", dry.stdout).group(1)
    assert "tiny_dinov2" not in anatomy and "tiny_hlip" in anatomy


def test_the_differences_figure_draws_every_pair_with_its_interval(tmp_path):
    import numpy as np
    import pandas as pd

    from neurovfm.plots.diagnosis import encoder_differences

    encoders = ["main", "base1", "base2", "random"]
    pairs = [("main", "random"), ("base1", "random"), ("base2", "random"), ("base1", "main"), ("base2", "main")]
    rng = np.random.default_rng(0)
    tables, truth = {}, {}
    for a, b in pairs:
        for m in ("ct", "mri"):
            d = float(rng.normal(0, 0.05))
            truth[(a, b, m)] = d
            path = tmp_path / f"diagnosis_{m}_{a}_vs_{b}.csv"
            row = {"encoder_a": f"{a} (X)", "encoder_b": b, "label": "all", "n_classes": 7, "auroc_a": 0.7 + d}
            row.update({"auroc_b": 0.7, "delta": d, "delta_lo": d - 0.03, "delta_hi": d + 0.03})
            pd.DataFrame([row, {**row, "label": "some_class"}]).to_csv(path, index=False)
            tables[(a, b, m)] = path
    out = tmp_path / "ed_encoder_comparison.png"
    table = encoder_differences(tables, encoders, out)
    assert out.exists() and out.with_suffix(".pdf").exists() and out.with_suffix(".csv").exists()
    assert len(table) == 10
    for (a, b, m), d in truth.items():
        r = table[(table["a"] == a) & (table["b"] == b) & (table["modality"] == m)].iloc[0]
        assert r["delta"] == d and r["delta_lo"] == d - 0.03 and r["encoder_a"] == f"{a} (X)"


def _dry(*args):
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", "profiles/armis2/paper.yaml"]
    env = {k: v for k, v in ENV.items() if k not in ("NEUROVFM_DINOV3_DIR", "NEUROVFM_BIOMEDCLIP_DIR")}
    return subprocess.run([*cmd, "--", *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)


def test_the_paper_profiles_all_plans_the_baselines_and_needs_no_downloaded_weights():
    dry = _dry("all")
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    for e in ("base", "base_mae", "base_hlip", "base_dinov2", "random"):
        assert f"results/paper/probes/{e}/ct/predictions.csv" in dry.stdout, e
    assert "results/paper/tables/diagnosis_mri_base_hlip_vs_base.csv" in dry.stdout


def test_a_public_encoder_whose_folder_variable_is_unset_is_named_in_one_message():
    dry = _dry("results/paper/features/dinov3/test/index.json")
    assert dry.returncode != 0
    assert "encoders.dinov3.path '${NEUROVFM_DINOV3_DIR}' names an environment variable that is not set" in (
        dry.stdout + dry.stderr
    )
