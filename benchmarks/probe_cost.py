"""Cost and result of the study-level probe's settings, measured in one run on one run's stored features.

For one (encoder, modality), the probe is fitted with each variant of the ``probes`` settings below, one after
another in this process (same features, same thread count), and for each the CPU seconds of the whole fit
(``time.process_time``: cross-validation, final fit, predictions) and the test mean AUROC with its bootstrap CI
are recorded. Each variant is then compared with the ``before`` variant on the same test studies (paired
study-level bootstrap of the mean-AUROC difference, :func:`neurovfm.probes.evaluate.encoder_difference`).

Variants:
* ``before``: the settings before the change (``selection: cv``: candidate and epoch chosen by 3-fold
  cross-validation over train + validation, then a train-only fit stopped at the chosen epoch);
* ``after``: the checkout's ``probes`` settings (``selection: fixed``: one train-only fit, the weights after
  ``fixed_epoch`` kept);
* ``control_undertrained``: ``after`` keeping the weights after epoch 2. A positive control of the comparison: a
  probe that has barely learned must come out clearly below ``before``, else the paired difference could not see a
  change.

(Until commit c35ecd8 ``before`` was two peak learning rates and 1,024 training tokens per bag, ``after`` the
cross-validated selection with one rate and 512 tokens; benchmarks/RESULTS.md keeps both comparisons.)

Usage: OMP_NUM_THREADS=1 python benchmarks/probe_cost.py OUT_DIR --results results/demo --encoder tiny
       --modality ct [--threads 1]
Writes OUT_DIR/{variant}/ (the probe's files and tables), OUT_DIR/probe_cost_{encoder}_{modality}.csv.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neurovfm import pipeline  # noqa: E402
from neurovfm.config import load_config  # noqa: E402

BEFORE = {"selection": "cv", "cv_folds": 3}
VARIANTS = {"before": BEFORE, "after": {}, "control_undertrained": {"fixed_epoch": 2}}


def _mean_row(path: Path) -> pd.Series:
    t = pd.read_csv(path)
    return t[t["category"] == "all"].iloc[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--encoder", default="tiny")
    ap.add_argument("--modality", default="ct", choices=("ct", "mri"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    base = load_config()
    res, enc, mod = args.results, args.encoder, args.modality
    rows = []
    for name, over in VARIANTS.items():
        cfg = copy.deepcopy(base)
        cfg["probes"].update(copy.deepcopy(over))
        out = args.out / name
        t0 = time.process_time()
        w0 = time.perf_counter()
        summary = pipeline.probe(
            cfg, enc, mod, res / "features" / enc, res / "labels" / f"{mod}.csv", None, out, threads=args.threads
        )
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        pipeline.diagnosis_table(
            cfg, mod, out / "predictions.csv", out / "thresholds.csv", out / "diag.csv", out / "diag_categories.csv"
        )
        m = _mean_row(out / "diag_categories.csv")
        rows.append(
            {
                "variant": name,
                "settings": json.dumps(over, sort_keys=True),
                "cpu_s": round(cpu, 1),
                "wall_s": round(wall, 1),
                "chosen": json.dumps(summary["hparams"], sort_keys=True),
                "best_epoch": summary["best_epoch"],
                "test_auroc": m["auroc"],
                "test_auroc_lo": m["auroc_lo"],
                "test_auroc_hi": m["auroc_hi"],
                "n_classes": int(m["n_classes"]),
            }
        )
        print(f"{name}: {cpu:.0f} CPU s, test mean AUROC {m['auroc']:.3f} [{m['auroc_lo']:.3f}, {m['auroc_hi']:.3f}]")
    table = pd.DataFrame(rows)
    before = table.set_index("variant").loc["before"]
    table["cpu_ratio_to_before"] = (table["cpu_s"] / before["cpu_s"]).round(3)
    deltas = []
    for name in VARIANTS:
        if name == "before":
            deltas.append((0.0, 0.0, 0.0))
            continue
        diff = args.out / f"{name}_vs_before.csv"
        pipeline.encoder_comparison(
            base,
            mod,
            name,
            "before",
            args.out / name / "predictions.csv",
            args.out / "before" / "predictions.csv",
            diff,
        )
        r = pd.read_csv(diff).iloc[0]
        deltas.append((r["delta"], r["delta_lo"], r["delta_hi"]))
    table[["delta_vs_before", "delta_lo", "delta_hi"]] = pd.DataFrame(deltas)
    path = args.out / f"probe_cost_{enc}_{mod}.csv"
    table.to_csv(path, index=False)
    print(table[["variant", "cpu_s", "cpu_ratio_to_before", "test_auroc", "delta_vs_before", "delta_lo", "delta_hi"]])
    print(f"-> {path}")


if __name__ == "__main__":
    main()
