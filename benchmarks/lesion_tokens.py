"""Token-level lesion check of frozen encoders on the demo's train + validation volumes (the test split is never
read): can a linear probe tell a token that a lesion fills from lesion-free brain tokens of the same volume?

Ground truth comes from the synthetic patients (:mod:`neurovfm.analysis.lesion_tokens`); folds keep each patient
on one side; the AUROC of the pooled out-of-fold scores gets a 95% CI from patient resamples, and every encoder
its paired difference from ``random``. ``raw`` (the token's voxels) is the pixel reference. Controls are tokens
that grey and white matter fill to at least ``--control-brain`` (a negative value: any lesion-free token, which
mostly measures brain against scalp and neck).

    python benchmarks/lesion_tokens.py /tmp/lesion_tokens.csv --tokens /tmp/lesion_tokens.npz \\
        --encoder random results/demo/features/random --encoder tiny results/demo/features/tiny

Each ``--encoder NAME DIR`` names a folder with ``train/index.json`` and ``val/index.json`` feature stores (as
``benchmarks/jepa_collapse.py --work`` leaves them, or ``results/demo/features/<encoder>``). Writes the CSV and a
figure next to it (``.png`` and ``.pdf``).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from neurovfm.analysis.lesion_tokens import (
    collect_tokens,
    features_at,
    grouped_oof_scores,
    load_tokens,
    patient_bootstrap_auroc,
    save_tokens,
)
from neurovfm.config import load_config, run_dir
from neurovfm.utils.atomic import write_csv

log = logging.getLogger("neurovfm")
SPLITS = ("train", "val")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_csv")
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--encoder", nargs=2, action="append", metavar=("NAME", "DIR"), required=True)
    ap.add_argument("--positive", type=float, default=0.3, help="lesion tokens: a tissue fills at least this much")
    ap.add_argument("--controls", type=int, default=3, help="control tokens per lesion token, same volume")
    ap.add_argument(
        "--control-brain",
        type=float,
        default=0.5,
        help="control tokens: grey + white matter fill at least this much (negative: any token)",
    )
    ap.add_argument("--no-raw", action="store_true", help="skip the voxel (pixel) reference")
    ap.add_argument(
        "--tokens",
        help="token selection (.npz): read it if it exists (other encoders scored on the same "
        "tokens in a minute, no raw reference), else write it after collecting",
    )
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--min-tokens", type=int, default=30, help="lesion tokens a tissue needs for its own row")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = load_config(args.config)
    seed = int(cfg["seed"])
    res = Path(run_dir(cfg))
    t0 = time.perf_counter()

    def progress(done, total):
        if done % 25 == 0 or done == total:
            rate = done / (time.perf_counter() - t0)
            log.info(
                "lesion tokens: %d/%d studies, %.2f studies/s, ETA %.0f s", done, total, rate, (total - done) / rate
            )

    indices = {name: [Path(d) / s / "index.json" for s in SPLITS] for name, d in args.encoder}
    if args.tokens and Path(args.tokens).is_file():  # the selection of an earlier run: other encoders, same tokens
        data = load_tokens(args.tokens)
        data["features"] = {name: features_at(data, paths) for name, paths in indices.items()}
        log.info("token selection read from %s (%d tokens)", args.tokens, len(data["label"]))
    else:
        data = collect_tokens(
            cfg,
            [res / f"shards/{s}/index.json" for s in SPLITS],
            indices,
            res / "pacs_export/truth",
            positive=args.positive,
            controls_per_lesion=args.controls,
            control_brain=None if args.control_brain < 0 else args.control_brain,
            raw=not args.no_raw,
            seed=seed,
            progress=progress,
        )
        log.info("volumes scored: %d; not scored: %s", data["volumes_used"], data["volumes_skipped"])
        if args.tokens:
            save_tokens(args.tokens, data)
    rows = []
    for modality in ("CT", "MR"):
        m = data["modality"] == modality
        y, groups, tissue = data["label"][m], data["patient"][m], data["tissue"][m]
        scores = {name: grouped_oof_scores(x[m], y, groups, seed=seed) for name, x in data["features"].items()}
        subsets = {"all": np.ones(len(y), bool)}
        for t in sorted(set(tissue[y == 1])):
            if (tissue == t).sum() >= args.min_tokens:  # that tissue's lesion tokens against every control token
                subsets[t] = (tissue == t) | (y == 0)
        for name, sub in subsets.items():
            ci = patient_bootstrap_auroc(y[sub], {k: s[sub] for k, s in scores.items()}, groups[sub], args.n_boot, seed)
            for enc, (v, lo, hi) in ci.items():
                rows.append(
                    {
                        "modality": modality,
                        "tissue": name,
                        "encoder": enc,
                        "auroc": round(v, 4),
                        "auroc_lo": round(lo, 4),
                        "auroc_hi": round(hi, 4),
                        "n_lesion": int(y[sub].sum()),
                        "n_control": int((y[sub] == 0).sum()),
                        "n_patients": len(np.unique(groups[sub])),
                    }
                )
        log.info("%s done", modality)
    df = pd.DataFrame(rows)
    write_csv(args.out_csv, df)
    figure(df, Path(args.out_csv).with_suffix(""), "normal-brain" if args.control_brain >= 0 else "lesion-free")
    print(df[df.tissue == "all"].to_string(index=False))


def figure(df: pd.DataFrame, stem: Path, controls: str) -> None:
    """Top: each encoder's token AUROC (patient-grouped CV); bottom: its paired difference from random weights
    (same patient resamples)."""
    import matplotlib.pyplot as plt

    from neurovfm.plots import save_figure

    d = df[df.tissue == "all"]
    fig, axes = plt.subplots(2, 2, figsize=(9, 5.6), sharex="col")
    for col, (mod, g) in enumerate(d.groupby("modality")):
        single = g[~g.encoder.str.contains("-")]
        x = {e: k for k, e in enumerate(single.encoder)}
        ax = axes[0, col]
        ax.errorbar(
            list(x.values()),
            single.auroc,
            yerr=[single.auroc - single.auroc_lo, single.auroc_hi - single.auroc],
            fmt="o",
            capsize=3,
        )
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{mod}: lesion vs {controls} tokens")
        diff = g[g.encoder.str.endswith("-random") & (g.encoder != "raw-random")]  # pixels: a reference only
        xs = [x[e.removesuffix("-random")] for e in diff.encoder]
        ax = axes[1, col]
        ax.errorbar(
            xs,
            diff.auroc,
            yerr=[diff.auroc - diff.auroc_lo, diff.auroc_hi - diff.auroc],
            fmt="o",
            capsize=3,
            color="C1",
        )
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xticks(list(x.values()), list(x), rotation=30, ha="right")
    axes[0, 0].set_ylabel("token AUROC")
    axes[1, 0].set_ylabel("encoder - random (paired)")
    fig.tight_layout()
    save_figure(fig, stem.with_suffix(".png"))


if __name__ == "__main__":
    main()
