"""Figures of the diagnostic analyses, each from its table (:mod:`neurovfm.analysis.diagnostic` and
:mod:`neurovfm.analysis.laterality_run`): Fig. 2e (label efficiency), Fig. 3c (cross-modal transfer),
Extended Data subgroups and laterality panels. A panel with nothing evaluable says so and why."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import save_figure

COLORS = plt.get_cmap("tab10")
MARKERS = {"CT": "o", "MR": "s"}


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def fig2e(table_csv, models_csv, encoders: list[str], out_png: str | Path) -> pd.DataFrame:
    """F1 against log10(training positives): one point per included class, the OLS line of each encoder and
    modality, and the label-equivalence folds."""
    t, m = pd.read_csv(table_csv), pd.read_csv(models_csv)
    inc = t[t["included"].astype(bool)].dropna(subset=["f1"])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if inc.empty:
        _note(ax, f"not evaluable: no class passes the thresholds\n({t['reason'].value_counts().to_dict()})")
    for k, enc in enumerate(encoders):
        d = inc[inc["encoder"] == enc]
        for mod, g in d.groupby("modality"):
            ax.scatter(
                np.log10(g["n_train_pos"]),
                g["f1"],
                color=COLORS(k),
                marker=MARKERS.get(mod, "o"),
                s=18,
                alpha=0.7,
                label=f"{enc} {mod}",
            )
            line = m[(m["section"] == "line") & (m["encoder"] == enc) & (m["modality"] == mod)].set_index("term")
            if {"intercept", "slope"} <= set(line.index):
                x = np.linspace(np.log10(g["n_train_pos"].min()), np.log10(g["n_train_pos"].max()), 20)
                ax.plot(
                    x,
                    line.loc["intercept", "coef"] + line.loc["slope", "coef"] * x,
                    color=COLORS(k),
                    ls="-" if mod == "CT" else "--",
                    lw=1.2,
                )
    folds = m[m["section"] == "label_equivalence"]
    text = [
        f"{r.encoder}: {r.coef:.2f}x [{r.ci_lo:.2f}, {r.ci_hi:.2f}]"
        if r.status == "ok"
        else f"fold not evaluable: {r.note}"
        for r in folds.itertuples()
    ]
    if text:
        ax.text(
            0.02,
            0.98,
            "positives needed vs reference\n" + "\n".join(text),
            transform=ax.transAxes,
            va="top",
            fontsize=7,
        )
    ax.set_xlabel("log10(training positives)")
    ax.set_ylabel("test F1 (Platt-calibrated)")
    if not inc.empty:
        ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, out_png, t)
    return t


def fig3c(table_csv, encoder: str, out_png: str | Path) -> pd.DataFrame:
    """Delta AUROC (transferred - native) per shared diagnosis with CIs and the equivalence band."""
    t = pd.read_csv(table_csv)
    t = t[t["encoder"] == encoder]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
    for ax, (src, tgt) in zip(axes, (("CT", "MR"), ("MR", "CT"))):
        d = t[(t["source"] == src) & (t["target"] == tgt)]
        ok = d[d["status"] == "ok"].reset_index(drop=True)
        ax.set_title(f"{src} probe -> {tgt} test ({encoder})", fontsize=9)
        if ok.empty:
            _note(
                ax,
                f"not evaluable: none of {len(d)} shared diagnoses has enough\npositives and negatives "
                f"in the {tgt} test set",
            )
            continue
        y = np.arange(len(ok))
        band = float(ok["band"].iloc[0])
        ax.axvspan(-band, band, color="grey", alpha=0.2, label=f"+/-{band:g} band")
        ax.axvline(0, color="black", lw=0.8)
        err = np.vstack([ok["delta"] - ok["delta_lo"], ok["delta_hi"] - ok["delta"]])
        ax.errorbar(ok["delta"], y, xerr=err, fmt="o", color=COLORS(0), capsize=2, ms=4)
        ax.set_yticks(y)
        ax.set_yticklabels([f"{r.label} ({r.verdict})" for r in ok.itertuples()], fontsize=7)
        ax.set_xlabel("delta AUROC (transferred - native)")
        ax.text(
            0.99,
            0.01,
            f"{len(d) - len(ok)} shared diagnoses not evaluable",
            transform=ax.transAxes,
            ha="right",
            fontsize=7,
        )
        ax.legend(fontsize=7, loc="upper left")
    save_figure(fig, out_png, t)
    return t


def ed_subgroups(cells_csv, encoder: str, band: float, out_png: str | Path) -> pd.DataFrame:
    """Delta AUROC of every evaluable (class, subgroup) cell with its CI, the +/- ``band`` region; outliers
    named."""
    t = pd.read_csv(cells_csv)
    t = t[(t["encoder"] == encoder) & (t["status"] == "ok")].reset_index(drop=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    for ax, mod in zip(axes, ("CT", "MR")):
        d = t[t["modality"] == mod].sort_values(["variable", "level", "label"]).reset_index(drop=True)
        ax.set_title(f"{mod} subgroups ({encoder})", fontsize=9)
        if d.empty:
            _note(ax, "not evaluable: no subgroup cell has enough\npositives and negatives")
            continue
        x = np.arange(len(d))
        for k, (var, g) in enumerate(d.groupby("variable", sort=False)):
            err = np.vstack([g["delta"] - g["delta_lo"], g["delta_hi"] - g["delta"]])
            ax.errorbar(g.index, g["delta"], yerr=err, fmt="o", ms=3, capsize=1.5, color=COLORS(k), label=var)
        ax.axhspan(-band, band, color="grey", alpha=0.2)
        ax.axhline(0, color="black", lw=0.8)
        for r in d[d["outlier"].astype(bool)].itertuples():
            ax.annotate(
                f"{r.label}\n{r.variable}={r.level} (S={r.S:.1f})",
                (r.Index, r.delta),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.set_xticks(x)
        ax.set_xticklabels([f"{r.level}: {r.label}" for r in d.itertuples()], rotation=90, fontsize=5)
        ax.set_ylabel("delta AUROC (subgroup - all)")
        ax.legend(fontsize=6)
    save_figure(fig, out_png, t)
    return t


def ed_laterality(summary_csv, studies_csv, out_png: str | Path) -> pd.DataFrame:
    """Logit changes under the left-right flip by true side, with the AUROCs, per encoder."""
    s, st = pd.read_csv(summary_csv), pd.read_csv(studies_csv)
    encoders = list(dict.fromkeys(s["encoder"]))
    fig, axes = plt.subplots(1, max(len(encoders), 1), figsize=(4.5 * max(len(encoders), 1), 4), squeeze=False)
    for ax, enc in zip(axes[0], encoders):
        d = st[st["encoder"] == enc]
        pooled = s[(s["encoder"] == enc) & (s["modality"] == "all")].iloc[0]
        ax.set_title(enc, fontsize=9)
        if d.empty:
            per = s[(s["encoder"] == enc) & (s["modality"] != "all")]
            _note(ax, "not evaluable:\n" + "\n".join(f"{r.modality}: {r.reason}" for r in per.itertuples()))
            continue
        for j, (col, name) in enumerate((("delta_left", "dL"), ("delta_right", "dR"))):
            for k, side in enumerate(("left", "right")):
                v = d.loc[d["side"] == side, col].to_numpy(float)
                xs = 2 * j + k + np.linspace(-0.15, 0.15, max(len(v), 1))[: len(v)]
                ax.scatter(xs, v, color=COLORS(k), s=14, label=f"true {side}" if j == 0 else None)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks([0, 1, 2, 3])
        ax.set_xticklabels(["dL\nleft", "dL\nright", "dR\nleft", "dR\nright"], fontsize=7)
        ax.set_ylabel("logit change (flipped - original)")
        txt = (
            f"AUROC dL {pooled['auroc_left']:.2f}, dR {pooled['auroc_right']:.2f},\n"
            f"dR-dL {pooled['auroc_combined']:.2f} (n={int(pooled['n_studies'])})"
            if pooled["status"] == "ok"
            else f"pooled AUROC not evaluable:\n{pooled['reason']}"
        )
        ax.text(0.02, 0.98, txt, transform=ax.transAxes, va="top", fontsize=7)
        ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, out_png, s)
    return s
