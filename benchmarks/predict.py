"""Seconds per study of ``neurovfm predict`` on the CPU, by stage (read, preprocess, encoder, probes, generation),
for a typical CT and a typical MRI study of a run's export, against a baseline measured in the same run: the
workflow's own per-study cost, i.e. the same studies through the workflow's steps in one batch (ingest,
preprocessing into shards, ``pipeline.features``, the probes over every bag, the report generator over every
study), divided by the number of studies. Wall-clock seconds per stage, and CPU seconds (``time.process_time``, both
threads) of the whole path, which a busy shared machine disturbs less than wall time.

"Typical" = the test study of that modality with the median number of slices over its included series. The
studies' files are copied to a scratch folder (as a user would point at one study's folder). Models are loaded
before timing (the bundle's one-off cost is reported apart, as ``load_s``) and one untimed prediction runs first
(first-call costs of the libraries), so both paths are timed warm.

Usage: OMP_NUM_THREADS=2 python benchmarks/predict.py OUT.json --bundle results/demo/bundle
       [--results results/demo] [--private private/demo] [--per-modality 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neurovfm.bundle.load import load_bundle  # noqa: E402
from neurovfm.predict.batch import predict  # noqa: E402
from neurovfm.predict.run import STAGES, predict_config  # noqa: E402


def typical_studies(results: Path, per_modality: int) -> pd.DataFrame:
    series = pd.read_csv(results / "ingest" / "series.csv", dtype={"study_id": str, "series_id": str})
    test = series[series["split"] == "test"]
    per = test.groupby(["study_id", "modality"], as_index=False)["n_slices"].sum()
    chosen = []
    for _, g in per.groupby("modality"):
        g = g.assign(dist=(g["n_slices"] - g["n_slices"].median()).abs()).sort_values(["dist", "study_id"])
        chosen.append(g.head(per_modality))
    return pd.concat(chosen)


def copy_study(results: Path, private: Path, study_id: str, dest: Path) -> None:
    series = pd.read_csv(results / "ingest" / "series.csv", dtype=str)
    files = pd.read_csv(private / "files.csv", dtype=str)
    sids = set(series[series["study_id"] == study_id]["series_id"])
    for rel in files[files["series_id"].isin(sids)]["path"]:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(results / "pacs_export" / "dicom" / rel, target)


def workflow_batch(bundle, folder: Path, work: Path, threads: int) -> tuple[dict, int]:
    """Stage seconds of the workflow's steps over every study in ``folder`` at once, and the study count."""
    from neurovfm import pipeline
    from neurovfm.features.store import FeatureReader
    from neurovfm.ingest.deid import resolve_key
    from neurovfm.ingest.run import run_ingest
    from neurovfm.preprocess.run import run_preprocess
    from neurovfm.probes.bags import BagSet
    from neurovfm.probes.train import predict as probe_predict
    from neurovfm.reportgen.data import StudyTokens
    from neurovfm.reportgen.triage import RuleJudge

    cfg = predict_config(bundle.cfg, 1)
    t = {}
    t0 = time.perf_counter()
    run_ingest(str(folder), None, work / "ingest", work / "private", cfg, resolve_key(cfg["deid"], cfg["run"]), 1)
    t["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_preprocess(work / "ingest" / "series.csv", work / "private" / "files.csv", folder, work / "shards", cfg)
    t["preprocess"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pipeline.features(
        cfg,
        bundle.card["encoder"],
        {"test": work / "shards" / "test" / "index.json"},
        bundle.stats_json,
        work / "features",
        encoder_pt=bundle.path("encoder/encoder.pt"),
        threads=threads,
    )
    t["encoder"] = time.perf_counter() - t0
    index = work / "features" / "test" / "index.json"
    studies = pd.read_csv(work / "ingest" / "studies.csv", dtype={"study_id": str})
    t0 = time.perf_counter()
    for mod, m in (("CT", "ct"), ("MR", "mri")):
        model, meta, _ = bundle.probe(m)
        ids = studies[studies["modality"] == mod]["study_id"]
        labels = pd.DataFrame({"study_id": ids, "split": "test", **{c: 0 for c in meta["class_names"]}})
        bags = BagSet(FeatureReader(index), labels, meta["class_names"], "test", mod, windows=meta["ct_windows"])
        probe_predict(model, bags, int(cfg["probes"]["eval_max_tokens"]))
    t["probes"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tokens, judge = (
        StudyTokens(index, bundle.cfg["reportgen"]),
        RuleJudge.from_config(bundle.cfg["reportgen"]["triage"]),
    )
    for sid, mod in zip(studies["study_id"], studies["modality"]):
        text, _ = bundle.generator.generate(tokens(sid), None)
        judge.triage([text], None, mod)
    t["generation"] = time.perf_counter() - t0
    return t, len(studies)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--results", default="results/demo")
    ap.add_argument("--private", default="private/demo")
    ap.add_argument("--per-modality", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results, private = Path(args.results), Path(args.private)
    t0 = time.perf_counter()
    bundle = load_bundle(args.bundle)
    bundle.encoder, bundle.generator, bundle.probe("ct"), bundle.probe("mri")  # noqa: B018 (load before timing)
    load_s = time.perf_counter() - t0
    chosen = typical_studies(results, args.per_modality)
    rows = []
    with tempfile.TemporaryDirectory(prefix="neurovfm-bench-") as tmp:
        tmp = Path(tmp)
        both = tmp / "all"
        first = chosen.iloc[0]["study_id"]
        copy_study(results, private, first, tmp / "warmup")
        list(predict(bundle, [tmp / "warmup"], tmp / "warmup_out", echo=lambda line: None))  # first-call costs
        for r in chosen.itertuples():
            one = tmp / r.study_id
            copy_study(results, private, r.study_id, one)
            copy_study(results, private, r.study_id, both)
            c0, w0 = time.process_time(), time.perf_counter()
            for rec in predict(bundle, [one], tmp / "out", echo=lambda line: print(line, flush=True)):
                rows.append(
                    {
                        "study_id": rec["study"]["study_id"],
                        "modality": rec["study"]["modality"],
                        "n_slices": int(r.n_slices),
                        **rec["timing_s"],
                        "cpu_s": time.process_time() - c0,
                        "with_outputs_s": time.perf_counter() - w0,
                    }
                )  # + prediction.json and summary page
        c0 = time.process_time()
        base, n = workflow_batch(bundle, both, tmp / "workflow", args.threads)
        base_cpu = (time.process_time() - c0) / n
    per = pd.DataFrame(rows)
    summary = {}
    for mod, g in per.groupby("modality"):
        summary[mod] = {s: round(float(g[s].mean()), 3) for s in (*STAGES, "total", "with_outputs_s")}
    base_per = {s: round(v / n, 3) for s, v in base.items()}
    base_per["total"] = round(sum(base_per.values()), 3)
    predict_mean = float(per["total"].mean())
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    out = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "commit": commit,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "bundle_id": bundle.bundle_id,
        "load_s": round(load_s, 3),
        "studies": rows,
        "predict_s_per_study": summary,
        "workflow_batch_s_per_study": base_per,
        "n_workflow_studies": n,
        "ratio_predict_to_workflow": round(predict_mean / base_per["total"], 3),
        "cpu_s_per_study": {"predict": round(float(per["cpu_s"].mean()), 3), "workflow_batch": round(base_cpu, 3)},
        "ratio_predict_to_workflow_cpu": round(float(per["cpu_s"].mean()) / base_cpu, 3),
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(
        json.dumps(
            {
                k: out[k]
                for k in (
                    "predict_s_per_study",
                    "workflow_batch_s_per_study",
                    "ratio_predict_to_workflow",
                    "cpu_s_per_study",
                    "ratio_predict_to_workflow_cpu",
                    "load_s",
                )
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
