"""How strongly do a study's pooled frozen features encode its labels? The yardstick for the report generator's
shuffled-image control (issue 22): per modality, an L2 logistic regression per label on the standardized pooled
features (the mean over series of each series' mean token, as the retrieval baseline pools them) of the train
split, scored by AUROC on the validation split (labels with >= 5 train and >= 2 validation positives), for the
encoder's real features and for ``benchmarks/reportgen_diagnose.py``'s oracle features at each ``--oracle``
amplitude (a fixed code of the study's labels added to every token: the positive control, which a linear probe
must read near perfectly).

    python benchmarks/reportgen_feature_signal.py benchmarks/results/reportgen_oracle/feature_signal.csv \\
        --run-dir results/demo --encoder tiny --oracle 0.5 2 8 [--noise 0 4 8]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from neurovfm.reportgen.baselines import pooled_features
from neurovfm.reportgen.data import StudyTokens
from neurovfm.reportgen.label_head import label_targets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reportgen_diagnose import OracleTokens  # noqa: E402

SERIES = {"ct_windows": ["brain"], "max_series": 8, "max_tokens_per_series": None}


def label_aurocs(run: Path, encoder: str, amplitude: float | None, noise: float = 0.0) -> list[dict]:
    rows = []
    for modality, table in (("CT", "ct"), ("MR", "mri")):
        labels = pd.read_csv(run / f"labels/{table}.csv", dtype={"study_id": str}).set_index("study_id")
        stores = {sp: StudyTokens(run / f"features/{encoder}/{sp}/index.json", SERIES) for sp in ("train", "val")}
        ids = {sp: [s for s in labels.index[labels.split == sp] if stores[sp].has(s)] for sp in stores}
        if amplitude is not None:
            targets, _ = label_targets(run / "labels/ct.csv", run / "labels/mri.csv", ids["train"] + ids["val"])
            stores = {sp: OracleTokens(st, targets, amplitude, study_noise=noise) for sp, st in stores.items()}
        x = {sp: pooled_features(stores[sp], ids[sp]) for sp in ids}
        mu, sd = x["train"].mean(0), x["train"].std(0) + 1e-6
        y = {sp: labels.loc[ids[sp]].drop(columns=["split"]).to_numpy() for sp in ids}
        for j, name in enumerate(labels.drop(columns=["split"]).columns):
            yt, yv = y["train"][:, j], y["val"][:, j]
            if yt.sum() < 5 or yv.sum() < 2 or yv.sum() == len(yv):
                continue
            clf = LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced").fit((x["train"] - mu) / sd, yt)
            auroc = roc_auc_score(yv, clf.decision_function((x["val"] - mu) / sd))
            rows.append(
                {
                    "features": "real" if amplitude is None else f"oracle {amplitude:g}, noise {noise:g}",
                    "modality": modality,
                    "label": name,
                    "n_train_pos": int(yt.sum()),
                    "n_val_pos": int(yv.sum()),
                    "n_val": len(yv),
                    "auroc": auroc,
                }
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--run-dir", type=Path, default=Path("results/demo"))
    ap.add_argument("--encoder", default="tiny")
    ap.add_argument("--oracle", type=float, nargs="*", default=[])
    ap.add_argument("--noise", type=float, nargs="*", default=[0.0], help="study_noise values for each amplitude")
    args = ap.parse_args()
    rows = label_aurocs(args.run_dir, args.encoder, None)
    for amplitude in args.oracle:
        for noise in args.noise:
            rows += label_aurocs(args.run_dir, args.encoder, amplitude, noise)
    df = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    summary = df.groupby(["features", "modality"]).auroc.agg(["mean", "count"]).round(3)
    print(summary.to_string())


if __name__ == "__main__":
    main()
