"""Vol-JEPA recipe ablations scored by diagnostics that can fail, on the train and validation splits only.

Each variant is a name and a JSON override of the config (a second seed is ``{"pretrain": {"seed": 1}}``; name
seeds as ``SETTING@sN`` so that the summary groups them). Per variant: pretrain the first model of
``pretrain.train`` on the run's train shards (a finished variant is reused), encode train and validation, then

1. **study level**: cross-validated linear probes on pooled study features over train + validation
   (:mod:`neurovfm.probes.pooled_cv`), mean AUROC over the classes with enough positives, and its paired
   difference from random weights with a 95% interval from 1,000 study resamples (the out-of-fold scores of both
   encoders on the same resamples);
2. **context**: the anatomy-under-flips diagnostic (:mod:`neurovfm.analysis.anatomy_context`) for every variant at
   once on the same tokens, with random weights, the position / intensity / raw references and, with
   ``--control STEPS``, the supervised positive control;
3. **training monitors** at the end of the run (:mod:`neurovfm.jepa.monitors`): loss against the positions-only
   floor, teacher drift, within-volume target rank.

    python benchmarks/pretrain_ablation.py benchmarks/results/ablation --run-dir results/demo --work /tmp/abl \\
        --variant random '{}' --variant base@s0 '{}' --variant base@s1 '{"pretrain": {"seed": 1}}' \\
        --variant concat@s0 '{"pretrain": {"models": {"tiny": {"pos_embed": "concat"}}}}' --control 300
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neurovfm import pipeline  # noqa: E402
from neurovfm.config import load_config, merged, validate  # noqa: E402
from neurovfm.eval.bootstrap import paired_auroc_difference, percentile_ci  # noqa: E402
from neurovfm.probes.bags import load_bagsets, read_label_table  # noqa: E402
from neurovfm.probes.pooled_cv import cv_mean_auroc, pooled_matrix  # noqa: E402
from neurovfm.probes.predictions import MODALITIES  # noqa: E402
from neurovfm.utils.atomic import write_csv  # noqa: E402

log = logging.getLogger("neurovfm")
MONITORS = [
    "loss",
    "floor_loss",
    "pred_loss_heldout",
    "teacher_drift",
    "target_erank_MR",
    "target_erank_CT",
    "self_content_r2",
]


def prepare(cfg: dict, name: str, run: Path, work: Path, threads: int) -> dict:
    """Pretrain (unless reused or ``random``) and extract train + validation features of one variant."""
    model = cfg["pretrain"]["train"][0]
    encoder = "random" if is_random(name) else model
    out = work / name
    t0 = time.perf_counter()
    pt = out / "pretrain/encoder.pt"
    if encoder != "random" and not pt.is_file():
        pipeline.pretrain(
            cfg,
            model,
            run / "shards/train/index.json",
            run / "shards/train/stats.json",
            out / "pretrain",
            threads=threads,
        )
    pipeline.features(
        cfg,
        encoder,
        {s: run / f"shards/{s}/index.json" for s in ("train", "val")},
        run / "shards/train/stats.json",
        out / "features",
        encoder_pt=None if encoder == "random" else pt,
        threads=threads,
    )
    return {
        "encoder": encoder,
        "pt": None if encoder == "random" else pt,
        "features": out / "features",
        "seconds": round(time.perf_counter() - t0, 1),
    }


def is_random(name: str) -> bool:
    """Variants named ``random`` or ``random_<arch>`` are random weights of the (overridden) architecture."""
    return name == "random" or name.startswith("random_")


def study_scores(cfg: dict, run: Path, features: Path) -> dict:
    """Per modality: (labels [n, K], out-of-fold scores [n, K'] of the scored classes, class indices)."""
    seed = int(cfg["probes"]["seed"] if cfg["probes"]["seed"] is not None else cfg["seed"])
    out = {}
    for mod, modality in MODALITIES.items():
        labels, names = read_label_table(run / f"labels/{mod}.csv", modality)
        bags = load_bagsets(
            features, labels, names, modality, splits=("train", "val"), windows=cfg["probes"]["ct_windows"]
        )
        x, y = pooled_matrix([bags["train"], bags["val"]])
        cv = cv_mean_auroc(x, y, seed=seed)
        out[mod] = (y[:, cv["classes"]], cv["scores"], cv["mean_auroc"])
    return out


def reference_of(name: str, pairs: dict) -> str:
    """The random-weights variant a variant is compared with: ``pairs[SETTING]`` or ``random``."""
    return pairs.get(name.split("@")[0], "random")


def study_rows(scores: dict, n_boot: int, seed: int, pairs: dict | None = None) -> list[dict]:
    rows = []
    for name, per_mod in scores.items():
        ref_name = reference_of(name, pairs or {})
        ref = scores.get(ref_name)
        for mod, (y, s, mean_auroc) in per_mod.items():
            row = {
                "variant": name,
                "modality": mod,
                "cv_mean_auroc": mean_auroc,
                "n_studies": len(y),
                "n_classes": y.shape[1],
                "reference": None if is_random(name) else ref_name,
            }
            if ref is not None and not is_random(name):
                df, d = paired_auroc_difference(
                    s, ref[mod][1], y, n_boot=n_boot, seed=seed, min_pos=2, return_replicates=True
                )
                ok = (df["status"] == "ok").to_numpy()
                mean_d = np.nanmean(d[:, ok], axis=1)
                lo, hi = percentile_ci(mean_d[:, None])
                row.update(diff=float(df["delta"][ok].mean()), diff_lo=float(lo[0]), diff_hi=float(hi[0]))
            rows.append(row)
    return rows


def monitor_row(name: str, pretrain_dir: Path, last: int = 50) -> dict:
    """Means of the monitors over the last ``last`` logged steps of a run."""
    path = pretrain_dir / "metrics.csv"
    if not path.is_file():
        return {"variant": name}
    m = pd.read_csv(path)
    tail = m[m["step"] >= m["step"].max() - last]
    return {"variant": name, **{c: float(tail[c].mean()) for c in MONITORS if c in tail}}


def setting_summary(table: pd.DataFrame, value: str) -> pd.DataFrame:
    """Mean and spread over seeds of each setting (variants named SETTING@sN)."""
    t = table.copy()
    t["setting"] = t["variant"].str.split("@").str[0]
    g = t.groupby(["setting", "modality"])[value]
    return pd.DataFrame({"mean": g.mean(), "sd": g.std(), "seeds": g.count()}).reset_index()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--work", required=True, help="folder for the variants' checkpoints and features")
    ap.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "JSON"), required=True)
    ap.add_argument(
        "--pair",
        action="append",
        default=[],
        metavar="SETTING=RANDOM",
        help="compare the seeds of SETTING with the random-weights variant RANDOM (same architecture);"
        " default: the variant named random",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--control", type=int, default=0, help="steps of the anatomy positive control (0: none)")
    ap.add_argument("--no-anatomy", action="store_true")
    ap.add_argument("--anatomy-args", default="", help="extra arguments for benchmarks/anatomy_context.py")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out, run, work = Path(args.out_dir), Path(args.run_dir), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    base = load_config(args.config)
    pairs = dict(p.split("=", 1) for p in args.pair)
    prepared, scores, monitors = {}, {}, []
    for name, override in args.variant:
        cfg = validate(merged(base, json.loads(override)))
        prepared[name] = {**prepare(cfg, name, run, work, args.threads), "override": override}
        scores[name] = study_scores(cfg, run, prepared[name]["features"])
        monitors.append(monitor_row(name, work / name / "pretrain"))
        study = pd.DataFrame(study_rows(scores, args.n_boot, int(base["seed"]), pairs))
        write_csv(out / "study_cv.csv", study)
        write_csv(out / "monitors.csv", pd.DataFrame(monitors))
        log.info("variant %s done (%.0f s)", name, prepared[name]["seconds"])
    write_csv(
        out / "variants.csv",
        pd.DataFrame([{"variant": k, "override": v["override"], "seconds": v["seconds"]} for k, v in prepared.items()]),
    )
    if "random" in scores and len(scores) > 2:
        write_csv(out / "study_cv_settings.csv", setting_summary(study[~study["variant"].map(is_random)], "diff"))
    print(study.round(4).to_string(index=False))
    if args.no_anatomy:
        return
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks/anatomy_context.py"),
        str(out / "anatomy_context.csv"),
        "--run-dir",
        str(run),
        "--config",
        args.config,
        "--threads",
        str(args.threads),
    ]
    for name, p in prepared.items():
        cmd += ["--encoder", name, "-" if p["pt"] is None else str(p["pt"])]
    if args.control:
        cmd += ["--control", str(args.control)]
    cmd += args.anatomy_args.split()
    subprocess.run(cmd, check=True)
    anat = pd.read_csv(out / "anatomy_context.csv")
    mean = anat[(anat["target"] == "mean") & anat["diff"].notna()].rename(columns={"encoder": "variant"})
    if len(mean):
        write_csv(out / "anatomy_settings.csv", setting_summary(mean, "diff"))


if __name__ == "__main__":
    main()
