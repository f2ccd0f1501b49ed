"""Fig. 2a (mean test AUROC per encoder and modality) and Fig. 2c (mean AUROC per diagnostic category).

Both read the category tables of :func:`neurovfm.probes.evaluate.diagnosis_tables` (``..._categories.csv``):
the ``all`` row is the mean over every evaluable class with a study-level bootstrap interval. Fig. 2a also shows
each evaluable class's AUROC as a dot (from the per-class tables).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import save_figure

MODALITY_TITLES = {"ct": "CT", "mri": "MRI"}


def _load(category_csvs: dict) -> pd.DataFrame:
    """``category_csvs``: {(encoder, modality): path} -> one long table."""
    frames = []
    for (enc, mod), path in category_csvs.items():
        t = pd.read_csv(path)
        t.insert(0, "modality", mod)
        t.insert(0, "encoder", enc)
        frames.append(t)
    return pd.concat(frames, ignore_index=True)


def _bars(ax, table: pd.DataFrame, groups: list, encoders: list[str], group_col: str) -> None:
    width = 0.8 / max(len(encoders), 1)
    colors = plt.get_cmap("tab10")
    for k, enc in enumerate(encoders):
        sub = table[table["encoder"] == enc].set_index(group_col).reindex(groups)
        x = np.arange(len(groups)) + (k - (len(encoders) - 1) / 2) * width
        y = sub["auroc"].to_numpy(float)
        err = np.vstack([y - sub["auroc_lo"].to_numpy(float), sub["auroc_hi"].to_numpy(float) - y])
        ax.bar(x, np.nan_to_num(y), width, color=colors(k), label=enc, alpha=0.85)
        ax.errorbar(x, y, yerr=np.where(np.isfinite(err), err, 0), fmt="none", ecolor="black", capsize=2, lw=0.8)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_ylim(0.3, 1.0)
    ax.set_ylabel("test AUROC")


def fig2a(category_csvs: dict, class_csvs: dict, encoders: list[str], out_png: str | Path) -> pd.DataFrame:
    t = _load(category_csvs)
    t = t[t["category"] == "all"]
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.4), sharey=True)
    for ax, mod in zip(axes, ("ct", "mri")):
        sub = t[t["modality"] == mod]
        _bars(ax, sub.assign(group="all"), ["all"], encoders, "group")
        width = 0.8 / max(len(encoders), 1)
        for k, enc in enumerate(encoders):
            path = class_csvs.get((enc, mod))
            if path is None:
                continue
            c = pd.read_csv(path)
            y = c.loc[c["status"] == "ok", "auroc"].to_numpy(float)
            x = (k - (len(encoders) - 1) / 2) * width + np.linspace(-width / 4, width / 4, max(len(y), 1))[: len(y)]
            ax.scatter(x, y, s=8, color="black", alpha=0.5, zorder=3)
        n = sub["n_classes"].max() if len(sub) else 0
        ax.set_title(f"{MODALITY_TITLES[mod]} ({int(n)} evaluable classes)")
        ax.set_xticks([])
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=8, frameon=False)
    fig.suptitle("Mean test AUROC per encoder (95% study-level bootstrap CI)")
    rows = -(-len(labels) // 3)  # legend rows under the panels
    fig.tight_layout(rect=(0, 0.05 + 0.05 * rows, 1, 0.95))
    table = t[
        [
            "encoder",
            "modality",
            "n_test",
            "n_classes",
            "n_excluded",
            "auroc",
            "auroc_lo",
            "auroc_hi",
            "balanced_accuracy",
            "balanced_accuracy_lo",
            "balanced_accuracy_hi",
        ]
    ].reset_index(drop=True)
    save_figure(fig, out_png, table)
    return table


def fig2c(category_csvs: dict, encoders: list[str], out_png: str | Path) -> pd.DataFrame:
    t = _load(category_csvs)
    t = t[(t["category"] != "all") & (t["n_classes"] > 0)]
    fig, axes = plt.subplots(2, 1, figsize=(10, 7))
    for ax, mod in zip(axes, ("ct", "mri")):
        sub = t[t["modality"] == mod]
        groups = list(dict.fromkeys(sub["category"]))
        _bars(ax, sub, groups, encoders, "category")
        ax.set_xticks(np.arange(len(groups)))
        ax.set_xticklabels([g.replace("_", " ") for g in groups], rotation=25, ha="right", fontsize=8)
        ax.set_title(MODALITY_TITLES[mod])
    axes[0].legend(fontsize=8)
    fig.suptitle("Mean test AUROC by diagnostic category (95% study-level bootstrap CI)")
    fig.tight_layout()
    table = t[
        ["encoder", "modality", "category", "n_classes", "n_excluded", "auroc", "auroc_lo", "auroc_hi"]
    ].reset_index(drop=True)
    save_figure(fig, out_png, table)
    return table


def encoder_differences(tables: dict, encoders: list[str], out_png: str | Path) -> pd.DataFrame:
    """Paired mean-AUROC differences of the compared encoders (Fig. 2a's tables, drawn): left, each encoder minus
    the floor (the last of ``encoders``, random weights); right, each comparison encoder minus the main model (the
    first). ``tables``: {(a, b, modality): path of tables/diagnosis_{modality}_{a}_vs_{b}.csv}, whose first row is
    the mean over the evaluable classes with its paired study-level bootstrap interval."""
    rows = []
    for (a, b, mod), path in tables.items():
        r = pd.read_csv(path).iloc[0]
        rows.append(
            {
                "encoder_a": r["encoder_a"],
                "encoder_b": r["encoder_b"],
                "a": a,
                "b": b,
                "modality": mod,
                "n_classes": int(r["n_classes"]),
                "auroc_a": r["auroc_a"],
                "auroc_b": r["auroc_b"],
                "delta": r["delta"],
                "delta_lo": r["delta_lo"],
                "delta_hi": r["delta_hi"],
            }
        )
    table = pd.DataFrame(rows)
    floor, main = encoders[-1], encoders[0]
    panels = [("floor", floor, [e for e in encoders[:-1]]), ("main", main, [e for e in encoders[1:-1]])]
    panels = [p for p in panels if p[2]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 1.4 + 0.5 * len(encoders)), squeeze=False)
    colors = {"ct": "tab:blue", "mri": "tab:orange"}
    for ax, (_, b, names) in zip(axes[0], panels):
        labels = []
        for i, a in enumerate(names):
            for j, mod in enumerate(("ct", "mri")):
                sub = table[(table["a"] == a) & (table["b"] == b) & (table["modality"] == mod)]
                if sub.empty:
                    continue
                r = sub.iloc[0]
                y = i + (j - 0.5) * 0.3
                ax.errorbar(
                    r["delta"],
                    y,
                    xerr=[[r["delta"] - r["delta_lo"]], [r["delta_hi"] - r["delta"]]],
                    fmt="o",
                    color=colors[mod],
                    capsize=3,
                    label=MODALITY_TITLES[mod] if i == 0 else None,
                )
            labels.append(table.loc[table["a"] == a, "encoder_a"].iloc[0] if (table["a"] == a).any() else a)
        ax.axvline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        b_label = table.loc[table["b"] == b, "encoder_b"].iloc[0] if (table["b"] == b).any() else b
        ax.set_title(f"minus {b_label}", fontsize=9)
        ax.set_xlabel("difference in mean test AUROC (95% paired bootstrap CI)")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Paired encoder comparisons on the same test studies")
    fig.tight_layout()
    save_figure(fig, out_png, table)
    return table
