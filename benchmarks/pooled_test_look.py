"""One look at the test split with the pooled linear probes that chose the pretraining recipe.

The recipe is chosen on train + validation only (``benchmarks/pretrain_ablation.py``: cross-validated pooled
probes, the context and lesion diagnostics). This script then fits the same per-class probes
(:func:`neurovfm.probes.pooled_cv.fit_and_score`) once on all train + validation studies of each encoder and scores
the test studies: mean AUROC over the classes with at least ``--min-pos`` development positives and 2 test
positives, and each encoder's paired difference from the reference (random weights of the same architecture) with a
95% interval from study resamples. Test features are extracted where the folder lacks them.

    python benchmarks/pooled_test_look.py benchmarks/results/pretrain_ablation/test_look.csv --config cfg.yaml \\
        --encoder random - /tmp/abl/random_concat/features \\
        --encoder concat@s0 /tmp/abl/concat@s0/pretrain/encoder.pt /tmp/abl/concat@s0/features
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from neurovfm import pipeline
from neurovfm.config import load_config, run_dir
from neurovfm.eval.bootstrap import paired_auroc_difference, percentile_ci
from neurovfm.probes.bags import load_bagsets, read_label_table
from neurovfm.probes.pooled_cv import fit_and_score, pooled_matrix
from neurovfm.probes.predictions import MODALITIES
from neurovfm.utils.atomic import write_csv

log = logging.getLogger("neurovfm")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_csv")
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--run-dir", default=None)
    ap.add_argument(
        "--encoder",
        nargs=3,
        action="append",
        required=True,
        metavar=("NAME", "PT", "FEATURES"),
        help="PT: an encoder.pt or - for random weights of the configured architecture",
    )
    ap.add_argument("--reference", default="random")
    ap.add_argument("--min-pos", type=int, default=8)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = load_config(args.config)
    run = Path(args.run_dir or run_dir(cfg))
    seed = int(cfg["seed"])
    model = cfg["pretrain"]["train"][0]
    scores, labels = {}, {}
    for name, pt, feats in args.encoder:
        feats = Path(feats)
        if not (feats / "test/index.json").is_file():
            pipeline.features(
                cfg,
                "random" if pt == "-" else model,
                {"test": run / "shards/test/index.json"},
                run / "shards/train/stats.json",
                feats,
                encoder_pt=None if pt == "-" else pt,
                threads=args.threads,
            )
        for mod, modality in MODALITIES.items():
            table, names = read_label_table(run / f"labels/{mod}.csv", modality)
            bags = load_bagsets(
                feats, table, names, modality, splits=("train", "val", "test"), windows=cfg["probes"]["ct_windows"]
            )
            x_fit, y_fit = pooled_matrix([bags["train"], bags["val"]])
            x_test, y_test = pooled_matrix([bags["test"]])
            n_fit, n_test = y_fit.sum(0), y_test.sum(0)
            classes = np.where(
                (n_fit >= args.min_pos)
                & (len(y_fit) - n_fit >= args.min_pos)
                & (n_test >= 2)
                & (len(y_test) - n_test >= 2)
            )[0]
            scores[(name, mod)] = fit_and_score(x_fit, y_fit, x_test, classes)
            labels[(name, mod)] = (y_test[:, classes], classes)
    rows = []
    for (name, mod), s in scores.items():
        y, classes = labels[(name, mod)]
        from sklearn.metrics import roc_auc_score

        row = {
            "encoder": name,
            "modality": mod,
            "test_mean_auroc": float(np.mean([roc_auc_score(y[:, k], s[:, k]) for k in range(len(classes))])),
            "n_studies": len(y),
            "n_classes": len(classes),
        }
        ref = scores.get((args.reference, mod))
        if ref is not None and name != args.reference:
            if not np.array_equal(labels[(args.reference, mod)][1], classes):
                raise ValueError(f"{name} {mod}: scored classes differ from the reference's")
            df, d = paired_auroc_difference(s, ref, y, n_boot=args.n_boot, seed=seed, min_pos=2, return_replicates=True)
            ok = (df["status"] == "ok").to_numpy()
            lo, hi = percentile_ci(np.nanmean(d[:, ok], axis=1)[:, None])
            row.update(diff=float(df["delta"][ok].mean()), diff_lo=float(lo[0]), diff_hi=float(hi[0]))
        rows.append(row)
    out = pd.DataFrame(rows)
    write_csv(args.out_csv, out)
    print(out.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
