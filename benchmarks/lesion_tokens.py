"""Token-level lesion check of frozen encoders on the demo's train + validation volumes (the test split is never
read): can a probe tell a token that a lesion fills from a control token of the same volume?

Ground truth comes from the synthetic patients (:mod:`neurovfm.analysis.lesion_tokens`). Controls
(``--control-kind``): ``matched`` (default), for every lesion token the lesion-free token of the same volume,
anywhere in the head, whose voxel mean and standard deviation are nearest (a CSF-like lesion against ventricle
and sulci, a blood-like one against bone or vessels), so that what a token's own intensity tells is taken away;
or ``brain``, lesion-free grey/white matter tokens (``--control-brain``), the earlier, easier check.

Probes: a linear one (standardised, class-weighted L2 logistic regression) and a small MLP (one hidden layer),
out-of-fold over 5 folds that keep each patient on one side. Subsets: ``all`` (one probe over every tissue) and
one probe per lesion tissue (its lesion tokens against the controls matched to them: one-sided, so bright and
dark lesions never share a direction). References scored on the same tokens: ``intensity`` (hand-crafted
statistics of the token's voxels: mean, sd, percentiles), ``raw`` (the voxels) and ``positions`` (the token's
grid position as the encoder's sine-cosine code: matched controls may sit anywhere in the head). The AUROC of the pooled
out-of-fold scores gets a 95% CI from patient resamples; every encoder its paired difference from ``random``.

Positive control (``--supervised STEPS``): the same tiny ViT trained on the train split's selected tokens to tell
lesion from matched control (:mod:`neurovfm.analysis.lesion_supervised`), features extracted for train + val. As
its encoder has seen train patients' labels, it is scored in a second scope, ``val``: probes fitted and scored
by patient-grouped folds within the validation patients only, where every encoder is scored too. Scope
``train+val`` leaves the supervised encoder out.

    python benchmarks/lesion_tokens.py /tmp/lesion/lesion_tokens.csv --tokens /tmp/lesion/tokens.npz \\
        --encoder random /tmp/abl/random/features --encoder tiny results/demo/features/tiny --supervised 200

Each ``--encoder NAME DIR`` names a folder with ``train/index.json`` and ``val/index.json`` feature stores (as
``benchmarks/pretrain_ablation.py --work`` leaves them, or ``results/demo/features/<encoder>``). The token
selection (``--tokens``) is written on the first call and read by later ones (other encoders, same tokens).
Writes the CSV and a figure next to it (``.png`` and ``.pdf``).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neurovfm import pipeline
from neurovfm.analysis.lesion_tokens import (
    PROBES,
    collect_tokens,
    features_at,
    grouped_oof_scores,
    load_tokens,
    patient_bootstrap_auroc,
    save_tokens,
)
from neurovfm.config import load_config, run_dir
from neurovfm.models.pos_embed import sincos_3d
from neurovfm.store.reader import ShardReader
from neurovfm.utils.atomic import write_csv

log = logging.getLogger("neurovfm")
SPLITS = ("train", "val")
CONTROL = "supervised_lesion"


def split_of_series(res: Path) -> dict[str, str]:
    out = {}
    for s in SPLITS:
        reader = ShardReader(res / f"shards/{s}/index.json")
        out.update({v["series_id"]: s for v in reader.volumes})
        reader.close()
    return out


def train_control(cfg: dict, data: dict, res: Path, split: np.ndarray, steps: int, out_stem: Path, threads: int):
    """Train the supervised lesion encoder on the train split's tokens, extract its train + val features."""
    from neurovfm.analysis.lesion_supervised import labels_by_series, train_lesion_encoder
    from neurovfm.jepa.build import model_config
    from neurovfm.jepa.checkpoint import save_encoder
    from neurovfm.store.dataset import VolumeDataset

    pt = out_stem.with_name(out_stem.name + f"_{CONTROL}.pt")
    if not pt.is_file():
        mcfg = model_config(cfg["pretrain"], cfg["pretrain"]["train"][0], cfg["preprocess"]["patch"])
        ds = VolumeDataset(res / "shards/train/index.json", res / "shards/train/stats.json", ct_channels=["brain"])
        t0 = time.perf_counter()
        enc, losses = train_lesion_encoder(
            mcfg, ds, labels_by_series(data, split == "train"), "brain", steps, 4, 5e-4, 0.05, int(cfg["seed"])
        )
        save_encoder(pt, enc, mcfg, steps)
        log.info(
            "lesion positive control trained in %.0f s (loss %.3f -> %.3f)",
            time.perf_counter() - t0,
            losses[0],
            float(np.mean(losses[-10:])),
        )
    feat_dir = out_stem.with_name(out_stem.name + f"_{CONTROL}_features")
    pipeline.features(
        cfg,
        cfg["pretrain"]["train"][0],
        {s: res / f"shards/{s}/index.json" for s in SPLITS},
        res / "shards/train/stats.json",
        feat_dir,
        encoder_pt=pt,
        threads=threads,
    )
    return feat_dir


def score_rows(
    data: dict, feats: dict, keep: np.ndarray, scope: str, probes, min_tokens: int, n_boot: int, seed: int
) -> list[dict]:
    rows = []
    for modality in ("CT", "MR"):
        m = keep & (data["modality"] == modality)
        y, groups, matched = data["label"][m], data["patient"][m], np.asarray(data["matched"])[m].astype(str)
        subsets = {"all": np.ones(len(y), bool)}
        for t in sorted(set(matched[y == 1])):
            if ((matched == t) & (y == 1)).sum() >= min_tokens and ((matched == t) & (y == 0)).sum() >= min_tokens:
                subsets[t] = matched == t  # that tissue's lesion tokens and the controls matched to them
        for probe in probes:
            for name, sub in subsets.items():
                if probe == "mlp" and name != "all":
                    continue  # MLP only on the pooled subset: its fits cost most
                try:
                    scores = {
                        k: grouped_oof_scores(x[m][sub], y[sub], groups[sub], seed=seed, probe=probe)
                        for k, x in feats.items()
                    }
                except ValueError as err:  # too few patients or lesion tokens for the folds
                    log.info("%s %s %s %s: not scored (%s)", scope, modality, probe, name, err)
                    continue
                ci = patient_bootstrap_auroc(y[sub], scores, groups[sub], n_boot, seed)
                for enc, (v, lo, hi) in ci.items():
                    rows.append(
                        {
                            "scope": scope,
                            "probe": probe,
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
            log.info("%s %s %s done", scope, modality, probe)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_csv")
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--encoder", nargs=2, action="append", metavar=("NAME", "DIR"), required=True)
    ap.add_argument("--positive", type=float, default=0.3, help="lesion tokens: a tissue fills at least this much")
    ap.add_argument("--control-kind", choices=("matched", "brain"), default="matched")
    ap.add_argument(
        "--controls",
        type=int,
        default=None,
        help="control tokens per lesion token, same volume (default: 1 matched, 3 brain)",
    )
    ap.add_argument(
        "--control-brain",
        type=float,
        default=0.5,
        help="brain controls: grey + white matter fill at least this much (negative: any token)",
    )
    ap.add_argument("--no-raw", action="store_true", help="skip the voxel and intensity references")
    ap.add_argument("--tokens", help="token selection (.npz): read it if it exists, else write it after collecting")
    ap.add_argument("--probe", nargs="+", choices=PROBES, default=list(PROBES))
    ap.add_argument("--supervised", type=int, default=0, help="steps of the supervised positive control (0: none)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--max-studies", type=int, default=None, help="first N studies only (a quick look)")
    ap.add_argument("--min-tokens", type=int, default=30, help="lesion tokens a tissue needs for its own probe")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    seed = int(cfg["seed"])
    res = Path(run_dir(cfg))
    out = Path(args.out_csv)
    out.parent.mkdir(parents=True, exist_ok=True)
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
        data["features"] = dict(data.pop("references")) if not args.no_raw else {}
        log.info("token selection read from %s (%d tokens)", args.tokens, len(data["label"]))
    else:
        first = dict([next(iter(indices.items()))])
        data = collect_tokens(
            cfg,
            [res / f"shards/{s}/index.json" for s in SPLITS],
            first,
            res / "pacs_export/truth",
            positive=args.positive,
            controls_per_lesion=args.controls or (1 if args.control_kind == "matched" else 3),
            control_brain=None if args.control_brain < 0 else args.control_brain,
            raw=not args.no_raw,
            seed=seed,
            progress=progress,
            controls=args.control_kind,
            max_studies=args.max_studies,
        )
        log.info("volumes scored: %d; not scored: %s", data["volumes_used"], data["volumes_skipped"])
        if args.tokens:
            save_tokens(args.tokens, data)
        data["features"] = {k: v for k, v in data["features"].items() if k in ("raw", "intensity")}
    feats = dict(data["features"])
    if not args.no_raw:  # what the position code alone tells (controls may sit anywhere in the head)
        feats["positions"] = sincos_3d(torch.as_tensor(np.asarray(data["coords"])), 48).numpy()
    for name, paths in indices.items():
        feats[name] = features_at(data, paths)
    split_of = split_of_series(res)
    split = np.asarray([split_of[s] for s in np.asarray(data["series"]).astype(str)])
    if args.supervised:
        control_dir = train_control(cfg, data, res, split, args.supervised, out.with_suffix(""), args.threads)
        feats[CONTROL] = features_at(data, [control_dir / s / "index.json" for s in SPLITS])
    rows = score_rows(
        data,
        {k: v for k, v in feats.items() if k != CONTROL},
        np.ones(len(split), bool),
        "train+val",
        args.probe,
        args.min_tokens,
        args.n_boot,
        seed,
    )
    if args.supervised:
        rows += score_rows(data, feats, split == "val", "val", args.probe, args.min_tokens, args.n_boot, seed)
    df = pd.DataFrame(rows)
    write_csv(out, df)
    figure(df, out.with_suffix(""), args.control_kind)
    print(df[(df.tissue == "all") & df.encoder.str.endswith("-random")].to_string(index=False))


def figure(df: pd.DataFrame, stem: Path, controls: str) -> None:
    """Per scope x modality: each encoder's paired difference from random weights (linear probe, every tissue
    pooled and each tissue's own probe)."""
    import matplotlib.pyplot as plt

    from neurovfm.plots import save_figure

    d = df[(df.probe == "linear") & df.encoder.str.endswith("-random")]
    panels = sorted(set(zip(d.scope, d.modality)))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)
    for ax, (scope, mod) in zip(axes[0], panels):
        g = d[(d.scope == scope) & (d.modality == mod)]
        tissues = ["all"] + sorted(set(g.tissue) - {"all"})
        encs = [e for e in g.encoder.str.removesuffix("-random").unique()]
        for k, enc in enumerate(encs):
            h = g[g.encoder == f"{enc}-random"].set_index("tissue").reindex(tissues)
            x = np.arange(len(tissues)) + (k - (len(encs) - 1) / 2) * 0.8 / max(1, len(encs))
            ax.errorbar(
                x, h.auroc, yerr=[h.auroc - h.auroc_lo, h.auroc_hi - h.auroc], fmt="o", ms=3, capsize=2, label=enc
            )
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xticks(range(len(tissues)), tissues, rotation=35, ha="right")
        ax.set_title(f"{mod}, {scope} patients: lesion vs {controls}")
    axes[0, 0].set_ylabel("token AUROC minus random weights (paired)")
    axes[0, -1].legend(fontsize=6, loc="best")
    fig.tight_layout()
    save_figure(fig, stem.with_suffix(".png"))


if __name__ == "__main__":
    main()
