"""The epoch a fixed-epoch probe keeps (``probes.fixed_epoch``), read from the cross-validated curves of a run whose
probes used ``selection: cv``.

Each probe folder of such a run (``probes/{encoder}/{modality}/history.csv``, phase ``cv``) holds the held-out mean
AUROC of every fold after every epoch. Per probe, the chosen candidate's curve is averaged over the folds; the
pooled curve is the mean of those curves over every probe (encoder x modality); the epoch kept is its maximum (the
earliest on a tie). Only train and validation studies enter these curves: the test split plays no part.
Per probe, the script also reports the loss of the pooled epoch against the probe's own best epoch (its curve at the
pooled epoch minus its maximum), to show how flat the curves are where the pooled epoch falls.

Usage: python benchmarks/probe_epoch_choice.py OUT_PREFIX --results results/demo
Writes OUT_PREFIX.csv (epoch x probe curves and the pooled one), OUT_PREFIX.json (choices), OUT_PREFIX.png/.pdf.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neurovfm.plots import plt, save_figure  # noqa: E402


def probe_curves(results: Path) -> pd.DataFrame:
    """epoch x ``{encoder}/{modality}``: each cross-validated probe's mean held-out AUROC (its chosen candidate)."""
    curves = {}
    for hist_path in sorted(results.glob("probes/*/*/history.csv")):
        hist = pd.read_csv(hist_path)
        if "phase" not in hist or not (hist["phase"] == "cv").any():
            continue
        sel = pd.read_csv(hist_path.with_name("selection.csv"))
        chosen = int(sel.loc[sel["chosen"], "candidate"].iloc[0])
        cv = hist[(hist["phase"] == "cv") & (hist["candidate"] == chosen)]
        enc, mod = hist_path.parent.parent.name, hist_path.parent.name
        curves[f"{enc}/{mod}"] = cv.groupby("epoch")["held_mean_auroc"].mean()
    if not curves:
        raise SystemExit(f"no probe of {results} was selected by cross-validation (selection: cv)")
    return pd.DataFrame(curves).sort_index()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="output prefix")
    ap.add_argument("--results", type=Path, required=True)
    args = ap.parse_args()
    table = probe_curves(args.results)
    pooled = table.mean(axis=1)
    epoch = int(pooled.idxmax())  # idxmax: the first maximum
    table["pooled"] = pooled
    summary = {
        "results": str(args.results),
        "probes": [c for c in table.columns if c != "pooled"],
        "epochs": int(table.index.max()),
        "pooled_epoch": epoch,
        "pooled_auroc": round(float(pooled.loc[epoch]), 4),
        "per_probe": {
            c: {
                "best_epoch": int(table[c].idxmax()),
                "best_auroc": round(float(table[c].max()), 4),
                "at_pooled_epoch": round(float(table[c].loc[epoch]), 4),
                "loss_at_pooled_epoch": round(float(table[c].max() - table[c].loc[epoch]), 4),
            }
            for c in summary_columns(table)
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for c in summary_columns(table):
        ax.plot(table.index, table[c], lw=1, alpha=0.6, label=c)
    ax.plot(table.index, pooled, color="black", lw=2.5, label="pooled (mean)")
    ax.axvline(epoch, color="black", ls="--", lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("held-out mean AUROC (cross-validation folds)")
    ax.set_title(f"probe epochs: pooled maximum at epoch {epoch}")
    ax.legend(fontsize=7, ncol=2)
    save_figure(fig, args.out.with_suffix(".png"), table.round(5).rename_axis("epoch").reset_index())
    print(json.dumps(summary, indent=2))


def summary_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c != "pooled"]


if __name__ == "__main__":
    main()
