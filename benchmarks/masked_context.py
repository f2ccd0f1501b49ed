"""Masked-context diagnostics of frozen encoders on the demo's train + validation volumes (the test split is never
read): from the shell around a hidden token, read the token's intensity statistics (``content``, R^2) and whether
a lesion fills it (``lesion``, AUROC; lesion tokens against intensity-matched controls).

The centres are the lesion check's token selection (``benchmarks/lesion_tokens.py --tokens``); the diagnostics
are :mod:`neurovfm.analysis.masked_context`. Readouts: linear (logistic for ``lesion``, ridge for ``content``),
out-of-fold over 5 folds that keep each patient on one side; 95% intervals from patient resamples and paired
differences from ``random``. References: ``positions`` and ``shell_intensity``.

Positive control (``--control STEPS``): the same ViT trained on the train split's centres to read both targets from
the shell (:func:`~neurovfm.analysis.masked_context.train_context_encoder`). It has seen train patients' labels, so
it is scored only in the second scope, ``val`` (folds within the validation patients), where every encoder is
scored as well.

    python benchmarks/masked_context.py /tmp/mc/masked_context.csv --tokens /tmp/les/tokens_matched.npz \\
        --encoder random - --encoder p10@s0 /tmp/abl/p10@s0/pretrain/encoder.pt --control 200
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neurovfm.analysis import masked_context as mc
from neurovfm.analysis.anatomy_context import grouped_r2
from neurovfm.analysis.lesion_tokens import grouped_oof_scores, load_tokens, patient_bootstrap_auroc
from neurovfm.config import load_config, run_dir
from neurovfm.eval.bootstrap import percentile_ci
from neurovfm.features.encoders import load_frozen
from neurovfm.store.dataset import VolumeDataset
from neurovfm.utils.atomic import write_csv
from neurovfm.utils.progress import Progress

log = logging.getLogger("neurovfm")
CONTROL = "supervised_context"


def centres_by_series(tokens: dict) -> dict:
    """(series, window) -> (coords [m, 3], labels [m], patient) of a token selection."""
    series, window = np.asarray(tokens["series"]).astype(str), np.asarray(tokens["window"]).astype(str)
    out = {}
    for key in sorted(set(zip(series, window))):
        m = (series == key[0]) & (window == key[1])
        out[key] = (np.asarray(tokens["coords"])[m], np.asarray(tokens["label"])[m], str(tokens["patient"][m][0]))
    return out


def lesion_rows(c: mc.Centres, keep: np.ndarray, scope: str, n_boot: int, seed: int) -> list[dict]:
    rows = []
    for mod in ("CT", "MR"):
        m = keep & (c.modality == mod)
        y, groups = c.label[m], c.group[m]
        try:
            scores = {k: grouped_oof_scores(x[m], y, groups, seed=seed) for k, x in c.features.items()}
        except ValueError as err:
            log.info("%s %s lesion: not scored (%s)", scope, mod, err)
            continue
        ci = patient_bootstrap_auroc(y, scores, groups, n_boot, seed)
        for name in c.features:
            v, lo, hi = ci[name]
            row = {
                "scope": scope,
                "readout": "lesion",
                "modality": mod,
                "encoder": name,
                "value": v,
                "lo": lo,
                "hi": hi,
                "n_centres": int(m.sum()),
                "n_patients": len(np.unique(groups)),
            }
            if f"{name}-random" in ci:
                row.update(zip(("diff", "diff_lo", "diff_hi"), ci[f"{name}-random"]))
            rows.append(row)
    return rows


def content_rows(c: mc.Centres, keep: np.ndarray, scope: str, n_boot: int, seed: int) -> list[dict]:
    rows = []
    for mod in ("CT", "MR"):
        m = keep & (c.modality == mod)
        y, groups = c.content[m], c.group[m]
        try:
            reps = {}
            for name, x in c.features.items():
                pred = mc.grouped_oof_ridge(x[m], y, groups, seed=seed)
                point, rep = grouped_r2(y, pred, groups, n_boot, seed)
                reps[name] = (point.mean(), rep.mean(axis=1))
        except ValueError as err:
            log.info("%s %s content: not scored (%s)", scope, mod, err)
            continue
        for name, (point, rep) in reps.items():
            lo, hi = percentile_ci(rep[:, None])
            row = {
                "scope": scope,
                "readout": "content",
                "modality": mod,
                "encoder": name,
                "value": float(point),
                "lo": float(lo[0]),
                "hi": float(hi[0]),
                "n_centres": int(m.sum()),
                "n_patients": len(np.unique(groups)),
            }
            if "random" in reps and name != "random":
                d = rep - reps["random"][1]
                dlo, dhi = percentile_ci(d[:, None])
                row.update(diff=float(point - reps["random"][0]), diff_lo=float(dlo[0]), diff_hi=float(dhi[0]))
            rows.append(row)
    return rows


def figure(df: pd.DataFrame, stem: Path) -> None:
    """Paired differences from random weights, per readout x modality, both scopes."""
    import matplotlib.pyplot as plt

    from neurovfm.plots import save_figure

    d = df[df["diff"].notna()]
    panels = sorted(set(zip(d.readout, d.modality)))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    for ax, (readout, mod) in zip(axes[0], panels):
        g = d[(d.readout == readout) & (d.modality == mod)]
        names = list(dict.fromkeys(g.encoder))
        for k, scope in enumerate(sorted(set(g.scope))):
            h = g[g.scope == scope].set_index("encoder").reindex(names)
            x = np.arange(len(names)) + (k - 0.5) * 0.3
            ax.errorbar(
                x,
                h["diff"],
                yerr=[h["diff"] - h.diff_lo, h.diff_hi - h["diff"]],
                fmt="o",
                ms=3,
                capsize=2,
                label=f"{scope} patients",
            )
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
        ax.set_title(f"{mod}: hidden token's {readout}")
    axes[0, 0].set_ylabel("minus random weights (paired)")
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, stem.with_suffix(".png"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_csv")
    ap.add_argument("--tokens", required=True, help="token selection of benchmarks/lesion_tokens.py (.npz)")
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--run-dir", default=None)
    ap.add_argument(
        "--encoder",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "PT"),
        help="an encoder.pt, or - for seeded random weights of the configured architecture",
    )
    ap.add_argument("--control", type=int, default=0, help="steps of the supervised positive control (0: none)")
    ap.add_argument("--max-volumes", type=int, default=200, help="train volumes sampled (validation: all)")
    ap.add_argument("--max-centres", type=int, default=16, help="centres per volume, half lesion where possible")
    ap.add_argument("--inner", type=int, default=1, help="hidden cube: Chebyshev radius in tokens")
    ap.add_argument("--outer", type=int, default=2, help="shell: up to this Chebyshev radius")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    seed = int(cfg["seed"])
    run = Path(args.run_dir or run_dir(cfg))
    out = Path(args.out_csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    centres_of = centres_by_series(load_tokens(args.tokens))
    stats = run / "shards/train/stats.json"
    data = {s: VolumeDataset(run / f"shards/{s}/index.json", stats, ct_channels=["brain"]) for s in ("train", "val")}
    patch = tuple(int(p) for p in data["train"].reader.index["patch"])
    encoders = {
        name: load_frozen(
            "random" if pt == "-" else name, cfg, None if pt == "-" else pt, seed=cfg["features"]["seed"]
        )[0].eval()
        for name, pt in args.encoder
    }
    if args.control:
        from neurovfm.jepa.build import model_config
        from neurovfm.jepa.checkpoint import save_encoder

        pt = out.with_name(out.stem + f"_{CONTROL}.pt")
        mcfg = model_config(cfg["pretrain"], cfg["pretrain"]["train"][0], cfg["preprocess"]["patch"])
        if pt.is_file():
            encoders[CONTROL] = load_frozen(CONTROL, cfg, pt)[0].eval()
        else:
            t0 = time.perf_counter()
            enc, _ = mc.train_context_encoder(
                mcfg, data["train"], centres_of, "brain", args.control, 4, 5e-4, 0.05, seed, args.inner, args.outer
            )
            save_encoder(pt, enc, mcfg, args.control)
            log.info("context positive control trained in %.0f s", time.perf_counter() - t0)
            encoders[CONTROL] = enc
    if not encoders:
        ap.error("give at least one --encoder or --control")
    n_vol = sum(min(args.max_volumes, len(ds)) if s == "train" else len(ds) for s, ds in data.items())
    progress = Progress(n_vol, "masked context", unit="volumes", every_s=30.0)
    centres, skipped = mc.collect(
        data,
        centres_of,
        encoders,
        patch,
        args.inner,
        args.outer,
        args.max_centres,
        {"train": args.max_volumes},
        seed,
        progress=progress,
    )
    progress.close()
    log.info(
        "%d centres (%d lesion) of %d patients", len(centres.label), int(centres.label.sum()), len(set(centres.group))
    )
    if skipped:
        write_csv(out.with_name(out.stem + "_skipped.csv"), pd.DataFrame(skipped))
    everything = np.ones(len(centres.label), bool)
    no_control = mc.Centres(
        **{**centres.__dict__, "features": {k: v for k, v in centres.features.items() if k != CONTROL}}
    )
    rows = lesion_rows(no_control, everything, "train+val", args.n_boot, seed)
    rows += content_rows(no_control, everything, "train+val", args.n_boot, seed)
    if args.control:
        val = centres.split == "val"
        rows += lesion_rows(centres, val, "val", args.n_boot, seed)
        rows += content_rows(centres, val, "val", args.n_boot, seed)
    df = pd.DataFrame(rows)
    write_csv(out, df)
    figure(df, out.with_suffix(""))
    cols = [c for c in ("scope", "readout", "modality", "encoder", "value", "diff", "diff_lo", "diff_hi") if c in df]
    print(df[cols].round(3).to_string(index=False))


if __name__ == "__main__":
    main()
