"""Fig. 2b: mean test AUROC against pretraining data and model size, and the multimodal model against the unimodal
ones, from ``tables/scaling.csv`` (:func:`neurovfm.analysis.scaling.scaling_table`).

One row of panels per modality (CT, MRI): (left) mean AUROC against the data fraction on a log axis, one line per
encoder size with its least-squares line and slope interval in the legend; (middle) mean AUROC against the
encoder's parameters, one line per data fraction; (right) the multimodal model and the unimodal model of that
modality, with the paired difference and its interval. Error bars are 95% study-level bootstrap intervals.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from neurovfm.scaling_grid import percent_label, size_rank

from . import save_figure

MODALITY_TITLES = {"ct": "CT", "mri": "MRI"}


def _err(sub: pd.DataFrame) -> np.ndarray:
    y = sub["auroc"].to_numpy(float)
    err = np.vstack([y - sub["auroc_lo"].to_numpy(float), sub["auroc_hi"].to_numpy(float) - y])
    return np.where(np.isfinite(err), err, 0.0)


def _fmt(v: float) -> str:
    return f"{v:+.3f}" if np.isfinite(v) else "n/a"


def _data_panel(ax, points: pd.DataFrame, fits: pd.DataFrame, sizes: list[str], colors) -> None:
    for k, size in enumerate(sizes):
        sub = points[points["size"] == size].sort_values("data_fraction")
        if sub.empty:
            continue
        x = sub["data_fraction"].to_numpy(float)
        fit = fits[fits["size"] == size]
        label = size
        if len(fit) and fit["status"].iloc[0] == "ok":
            f = fit.iloc[0]
            label = f"{size}: slope {_fmt(f['slope'])} [{_fmt(f['slope_lo'])}, {_fmt(f['slope_hi'])}]"
            grid = np.linspace(np.log10(x.min()), np.log10(x.max()), 20)
            ax.plot(10**grid, f["intercept"] + f["slope"] * grid, ls="--", lw=0.9, color=colors(k))
        ax.errorbar(x, sub["auroc"], yerr=_err(sub), marker="o", ms=4, lw=1.2, capsize=2, color=colors(k), label=label)
    fractions = sorted(points["data_fraction"].dropna().unique())
    ax.set_xscale("log")
    ax.set_xticks(fractions)
    ax.set_xticklabels([f"{percent_label(f)}%" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("pretraining data (share of the train split's studies)")
    ax.legend(fontsize=7, loc="lower right", title="size: slope per 10x data [95% CI]", title_fontsize=7)


def _size_panel(ax, points: pd.DataFrame, sizes: list[str]) -> None:
    fractions = sorted(points["data_fraction"].dropna().unique())
    cmap = plt.get_cmap("viridis")
    params = {s: float(points.loc[points["size"] == s, "params"].iloc[0]) for s in sizes}
    for k, f in enumerate(fractions):
        sub = points[points["data_fraction"] == f].copy()
        sub["rank"] = sub["size"].map(size_rank)
        sub = sub.sort_values("rank")
        x = sub["size"].map(params).to_numpy(float)
        color = cmap(k / max(len(fractions) - 1, 1))
        ax.errorbar(
            x,
            sub["auroc"],
            yerr=_err(sub),
            marker="s",
            ms=4,
            lw=1.2,
            capsize=2,
            color=color,
            label=f"{percent_label(f)}% of the data",
        )
    xs = [params[s] for s in sizes]
    ax.set_xscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{s}\n{params[s] / 1e6:.2g}M" for s in sizes], fontsize=8)
    ax.minorticks_off()
    if len(xs) == 1:
        ax.set_xlim(xs[0] / 2, xs[0] * 2)
    ax.set_xlabel("encoder size (parameters)")
    ax.legend(fontsize=7, loc="lower right")


def _unimodal_panel(ax, points_all: pd.DataFrame, uni: pd.DataFrame, mod: str) -> None:
    row = uni[uni["modality"] == mod]
    if row.empty:
        ax.axis("off")
        ax.text(0.5, 0.5, "no unimodal comparison\n(scaling.unimodal: null)", ha="center", va="center", fontsize=8)
        return
    r = row.iloc[0]
    names = [r["model"], r["compared_with"]]
    bars = []
    for name in names:
        p = points_all[(points_all["model"] == name) & (points_all["modality"] == mod)]
        bars.append(p.iloc[0] if len(p) else None)
    y = np.array([r["auroc"], r["auroc_b"]], float)
    lo = np.array([b["auroc_lo"] if b is not None else np.nan for b in bars], float)
    hi = np.array([b["auroc_hi"] if b is not None else np.nan for b in bars], float)
    err = np.where(np.isfinite([y - lo, hi - y]), [y - lo, hi - y], 0.0)
    ax.bar([0, 1], np.nan_to_num(y), color=["tab:blue", "tab:grey"], alpha=0.85, width=0.6)
    ax.errorbar([0, 1], y, yerr=err, fmt="none", ecolor="black", capsize=3, lw=0.8)
    ax.set_xticks([0, 1])
    ax.set_xticklabels([f"{names[0]}\n(CT+MRI)", f"{names[1]}\n({MODALITY_TITLES[mod]} only)"], fontsize=8)
    ax.set_title(
        f"multimodal - unimodal: {_fmt(r['delta'])} [{_fmt(r['delta_lo'])}, {_fmt(r['delta_hi'])}]", fontsize=8
    )


def fig2b(table: pd.DataFrame | str | Path, out_png: str | Path) -> pd.DataFrame:
    """Draw Fig. 2b from the scaling table; writes ``out_png``, a PDF and the table beside it (``.csv``)."""
    t = pd.read_csv(table) if not isinstance(table, pd.DataFrame) else table
    points_all = t[t["section"] == "point"]
    points = points_all[points_all["modalities"] == "CT+MR"]
    fits, uni = t[t["section"] == "fit"], t[t["section"] == "unimodal"]
    sizes = sorted(points["size"].dropna().unique(), key=size_rank)
    colors = plt.get_cmap("tab10")
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), gridspec_kw={"width_ratios": [1.3, 1.0, 0.7]})
    for row, mod in zip(axes, ("ct", "mri")):
        p = points[points["modality"] == mod]
        _data_panel(row[0], p, fits[fits["modality"] == mod], sizes, colors)
        _size_panel(row[1], p, sizes)
        _unimodal_panel(row[2], points_all, uni, mod)
        shown = points_all[points_all["modality"] == mod]
        lo = np.nanmin(np.r_[shown["auroc_lo"].to_numpy(float), 0.5])
        hi = np.nanmax(np.r_[shown["auroc_hi"].to_numpy(float), 0.5])
        for ax in row:  # one AUROC scale per modality, the chance line in view
            ax.set_ylim(max(0.0, lo - 0.03), min(1.0, hi + 0.03))
        n = p["n_classes"].max() if len(p) else 0
        row[0].set_ylabel(f"{MODALITY_TITLES[mod]}: mean test AUROC\n({int(n) if np.isfinite(n) else 0} classes)")
        for ax in row:
            if ax.axison:
                ax.axhline(0.5, color="grey", lw=0.6, ls=":")
    fig.suptitle("Scaling with pretraining data and model size (mean test AUROC, 95% study-level bootstrap CI)")
    fig.tight_layout()
    save_figure(fig, out_png, t)
    return t
