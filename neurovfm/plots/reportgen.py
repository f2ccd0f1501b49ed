"""Report-generation figures (Fig. 4b-d, Extended Data Fig. 16e left), drawn from the evaluation tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from neurovfm.plots import plt, save_figure

REFERENCE = "reference"


def label(model: str) -> str:
    if model == REFERENCE:
        return "reference findings"
    if "/n" in model:
        enc, size = model.split("/n")
        return f"NeuroVFM-LLaVA\n({enc}, n={size})"
    return model.replace(" (", "\n(", 1)  # baselines: "retrieval\n(encoder)"


def _bars(ax, table: pd.DataFrame, x: str, hue: str, y: str, lo: str, hi: str, title: str, ylabel: str) -> None:
    xs = list(dict.fromkeys(table[x]))
    hues = list(dict.fromkeys(table[hue]))
    w = 0.8 / max(len(hues), 1)
    for k, h in enumerate(hues):
        sub = table[table[hue] == h].set_index(x).reindex(xs)
        pos = np.arange(len(xs)) + (k - (len(hues) - 1) / 2) * w
        err = np.vstack([sub[y] - sub[lo], sub[hi] - sub[y]]).clip(min=0)
        ax.bar(pos, sub[y], w, yerr=err, capsize=3, label=str(h))
    ax.set_xticks(np.arange(len(xs)), [label(v) if x == "model" else str(v) for v in xs], fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)


def _models(table: pd.DataFrame, main: str) -> pd.DataFrame:
    """The main model, frontier models and the reference findings (the other training sizes are scaling)."""
    keep = [m for m in dict.fromkeys(table.model) if m == main or m == REFERENCE or "/n" not in m]
    order = {m: k for k, m in enumerate([main] + [m for m in keep if m not in (main, REFERENCE)] + [REFERENCE])}
    out = table[table.model.isin(keep)].copy()
    return out.sort_values("model", key=lambda s: s.map(order), kind="stable")


def fig4b(triage_csv, main: str, out_png) -> pd.DataFrame:
    t = _models(pd.read_csv(triage_csv), main)
    overall = t[(t.stratum == "all") & (t.variant == "indication")]
    path = t[t.stratum.str.startswith("pathology:") & (t.variant == "indication") & (t.judge == "rules")].copy()
    path["pathology"] = path.stratum.str.split(":").str[1]
    ablation = t[(t.stratum == "all") & (t.judge == "rules")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    _bars(axes[0], overall, "model", "judge", "accuracy", "ci_lo", "ci_hi", "Triage accuracy by judge", "accuracy")
    _bars(
        axes[1],
        path,
        "pathology",
        "model",
        "accuracy",
        "ci_lo",
        "ci_hi",
        "By acute pathology (rules judge)",
        "accuracy",
    )
    _bars(axes[2], ablation, "model", "variant", "accuracy", "ci_lo", "ci_hi", "With / without indication", "accuracy")
    table = pd.concat([overall, path.drop(columns="pathology"), ablation]).drop_duplicates()
    save_figure(fig, out_png, table)
    return table


def fig4c(triage_csv, main: str, out_png) -> pd.DataFrame:
    t = _models(pd.read_csv(triage_csv), main)
    t = t[(t.stratum == "all") & (t.variant == "indication")]
    fig, ax = plt.subplots(figsize=(6, 4))
    _bars(
        ax,
        t,
        "model",
        "judge",
        "urgent_sensitivity",
        "urgent_ci_lo",
        "urgent_ci_hi",
        "Urgent studies triaged urgent",
        "sensitivity",
    )
    save_figure(fig, out_png, t)
    return t


def fig4d(text_csv, main: str, out_png) -> pd.DataFrame:
    t = _models(pd.read_csv(text_csv), main)
    t = t[(t.subset == "triage_set") & (t.variant == "indication")]
    fig, ax = plt.subplots(figsize=(6, 4))
    _bars(ax, t, "metric", "model", "mean", "ci_lo", "ci_hi", "Generated vs reference findings", "score")
    save_figure(fig, out_png, t)
    return t


def ed_scaling(scaling_csv, out_png) -> pd.DataFrame:
    t = pd.read_csv(scaling_csv).sort_values("size")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, (y, lo, hi, name) in zip(
        axes,
        (
            ("meteor", "meteor_ci_lo", "meteor_ci_hi", "METEOR"),
            ("triage_accuracy", "accuracy_ci_lo", "accuracy_ci_hi", "Triage accuracy (rules judge)"),
        ),
    ):
        ax.errorbar(t["size"], t[y], yerr=np.vstack([t[y] - t[lo], t[hi] - t[y]]).clip(min=0), marker="o", capsize=3)
        ax.set_xscale("log")
        ax.set_xlabel("curated training pairs")
        ax.set_ylabel(name)
        ax.set_ylim(0, 1.05)
    save_figure(fig, out_png, t)
    return t
