"""Stages of the GPU check (``benchmarks/gpu_check.py``) that have no command of their own, one per subcommand,
each run by the driver as a child process with a timeout and writing one JSON result:

- ``features``: the package's features stage (:func:`neurovfm.pipeline.features`) on the train and validation
  splits of a run, for a pretrained ``encoder.pt`` or for random weights (the architecture of the first of
  ``pretrain.train``, as the workflow's ``random`` encoder);
- ``cv``: the pooled cross-validated probe score (:mod:`neurovfm.probes.pooled_cv`) per modality over the train +
  validation studies, as ``benchmarks/jepa_collapse.py --cv-only`` scores a variant. The test split is never read;
- ``demo-data``: the demo's shards and label tables on a bare machine (the device machine gets no ``results/``):
  the workflow's synth, ingest, labels and preprocess steps (:mod:`neurovfm.pipeline`, as the rules call them) with
  config.yaml as it is, into ``--run-dir`` (``results/demo``) and ``--private-dir`` (``private/demo``).

    python benchmarks/gpu_check_stages.py features --config CFG --run-dir results/demo --encoder random \\
        --out OUT/features/random --result OUT/features_random.json
    python benchmarks/gpu_check_stages.py cv --config CFG --run-dir results/demo --features OUT/features/random \\
        --result OUT/cv_random.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neurovfm import pipeline  # noqa: E402
from neurovfm.config import load_config  # noqa: E402
from neurovfm.probes.bags import load_bagsets, read_label_table  # noqa: E402
from neurovfm.probes.pooled_cv import cv_mean_auroc, pooled_matrix  # noqa: E402
from neurovfm.probes.predictions import MODALITIES  # noqa: E402

SPLITS = ("train", "val")


def features(args) -> dict:
    cfg = load_config(args.config)
    run = Path(args.run_dir)
    t0 = time.perf_counter()
    summary = pipeline.features(
        cfg,
        args.encoder,
        {s: run / f"shards/{s}/index.json" for s in SPLITS},
        run / "shards/train/stats.json",
        Path(args.out),
        encoder_pt=args.encoder_pt,
        device=args.device,
    )
    return {"encoder": args.encoder, "seconds": time.perf_counter() - t0, "splits": summary}


def cv(args) -> dict:
    cfg = load_config(args.config)
    run = Path(args.run_dir)
    seed = int(cfg["probes"]["seed"] if cfg["probes"]["seed"] is not None else cfg["seed"])
    out = {}
    for mod, modality in MODALITIES.items():
        labels, names = read_label_table(run / f"labels/{mod}.csv", modality)
        bags = load_bagsets(args.features, labels, names, modality, splits=SPLITS, windows=cfg["probes"]["ct_windows"])
        x, y = pooled_matrix([bags[s] for s in SPLITS])
        score = cv_mean_auroc(x, y, min_pos=args.min_pos, n_folds=args.folds, repeats=args.repeats, seed=seed)
        out[mod] = {
            "mean_auroc": float(score["mean_auroc"]),
            "per_repeat": [float(v) for v in score["per_repeat"]],
            "n_classes": len(score["classes"]),
            "n_studies": int(len(y)),
        }
    return out


def demo_data(args) -> dict:
    cfg = load_config(args.config)
    run, priv = Path(args.run_dir), Path(args.private_dir)
    cfg = {**cfg, "run": run.name, "paths": {**cfg["paths"], "results": str(run.parent), "private": str(priv.parent)}}
    export, seconds = run / "pacs_export", {}

    def step(name, fn, *a, **k):
        t0 = time.perf_counter()
        fn(cfg, *a, **k)
        seconds[name] = round(time.perf_counter() - t0, 1)

    step("synth", pipeline.synth, export, threads=args.workers)
    step(
        "ingest", pipeline.ingest, export / "dicom", export / "reports.csv", run / "ingest", priv, threads=args.workers
    )
    step("labels", pipeline.labels, priv / "reports.jsonl", run / "ingest" / "studies.csv", run / "labels", priv)
    step(
        "preprocess",
        pipeline.preprocess,
        run / "ingest" / "series.csv",
        priv / "files.csv",
        export / "dicom",
        run / "shards",
        threads=args.workers,
    )
    return {"seconds": seconds, "workers": args.workers}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="stage", required=True)
    p = sub.add_parser("features", help="frozen features of the train and val splits")
    p.add_argument("--encoder", required=True, help="a key of pretrain.models (with --encoder-pt) or random")
    p.add_argument("--encoder-pt", help="the pretrained encoder.pt")
    p.add_argument("--out", required=True, help="feature folder (split subfolders)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.set_defaults(func=features)
    p = sub.add_parser("cv", help="pooled cross-validated probe score per modality (train + val)")
    p.add_argument("--features", required=True, help="feature folder written by the features stage")
    p.add_argument("--min-pos", type=int, default=8, help="positives and negatives a class needs")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3, help="fold draws averaged")
    p.set_defaults(func=cv)
    p = sub.add_parser("demo-data", help="synth, ingest, labels and preprocess of the demo into --run-dir")
    p.add_argument("--private-dir", required=True, help="the run's PHI-bearing folder (private/{run})")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    p.set_defaults(func=demo_data)
    for p in sub.choices.values():
        p.add_argument("--config", required=True, help="the run configuration (the check's merged config)")
        p.add_argument("--run-dir", required=True, help="results/{run} with shards/ and labels/")
        p.add_argument("--result", required=True, help="JSON result path")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    result = args.func(args)
    Path(args.result).parent.mkdir(parents=True, exist_ok=True)
    Path(args.result).write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
