"""Fig. 3a (t-SNE of token features by region), Fig. 3b (cross-volume patch matching) and Extended Data Fig. 13e
(dense k-means brain cluster) from :func:`neurovfm.analysis.anatomy_run.run_anatomy`'s outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from neurovfm.analysis.anatomy_regions import REGIONS
from neurovfm.plots import plt, save_figure

_COLOURS = dict(zip(REGIONS, ["#d9d9d9", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]))


def fig3a(tsne: pd.DataFrame, encoder: str, out_png) -> None:
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    for r in REGIONS:
        d = tsne[tsne["region"] == r]
        if len(d):
            ax.scatter(
                d["x"],
                d["y"],
                s=4 if r != "non_brain" else 2,
                c=_COLOURS[r],
                label=r.replace("_", " "),
                alpha=0.8 if r != "non_brain" else 0.35,
                linewidths=0,
            )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of {encoder} token features by region")
    ax.legend(markerscale=3, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    save_figure(fig, out_png, tsne)


def fig3b(table: pd.DataFrame, pairs: pd.DataFrame, out_png) -> None:
    t = table[(table["analysis"] == "matching")]
    encoders = list(dict.fromkeys(t["encoder"]))
    groups = ["all", *[r for r in REGIONS[1:] if r in set(t["group"])]]
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    w = 0.8 / (len(encoders) + 1)
    x = np.arange(len(groups))
    for k, enc in enumerate(encoders):
        d = t[(t["encoder"] == enc) & (t["metric"] == "accuracy")].set_index("group").reindex(groups)
        ax.bar(x + k * w, d["value"], w, yerr=[d["value"] - d["lo"], d["hi"] - d["value"]], label=enc, capsize=2)
    ch = t[(t["metric"] == "chance")].groupby("group")["value"].mean()
    ax.axhline(float(ch.get("all", np.nan)), color="k", ls="--", lw=1, label="chance")
    ax.set_xticks(x + w * (len(encoders) - 1) / 2)
    ax.set_xticklabels([g.replace("_", " ") for g in groups], rotation=30, ha="right")
    ax.set_ylabel("same-region nearest neighbour")
    ax.set_ylim(0, 1)
    ax.set_title("Patch matching across subjects, sequences and orientations")
    ax.legend(fontsize=8, frameon=False)
    save_figure(fig, out_png, pairs)


def ed_kmeans(km_rows: list[dict], table: pd.DataFrame, out_png) -> None:
    encoders = list(dict.fromkeys(r["encoder"] for r in km_rows))
    examples = {}
    for r in km_rows:
        examples.setdefault(r["orientation"], r["series_id"])
    orients = sorted(examples)
    fig, axes = plt.subplots(
        len(encoders), len(orients) + 1, figsize=(3.0 * (len(orients) + 1), 2.8 * len(encoders)), squeeze=False
    )
    for e, enc in enumerate(encoders):
        for o, orient in enumerate(orients):
            r = next(x for x in km_rows if x["encoder"] == enc and x["series_id"] == examples[orient])
            cmap, brain = r["cluster_map"], r["brain"]
            s = int(np.argmax(brain.sum(axis=(1, 2))))
            ax = axes[e, o]
            img = np.ma.masked_less(cmap[s].astype(float), 0)
            ax.imshow(img, cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
            ax.contour(brain[s], levels=[0.5], colors="w", linewidths=0.8)
            ax.set_title(f"{enc}, {orient}: IoU {r['iou']:.2f}", fontsize=8)
            ax.axis("off")
        d = table[(table["analysis"] == "kmeans") & (table["encoder"] == enc)].set_index("group")
        ax = axes[e, -1]
        grp = [g for g in ["all", "axial", "coronal", "sagittal"] if g in d.index]
        ax.bar(
            grp,
            d.loc[grp, "value"],
            yerr=[d.loc[grp, "value"] - d.loc[grp, "lo"], d.loc[grp, "hi"] - d.loc[grp, "value"]],
            capsize=2,
            color="#1f77b4",
        )
        ax.set_ylim(0, 1)
        ax.set_title(f"{enc}: brain-cluster IoU", fontsize=8)
    per_volume = pd.DataFrame([{k: v for k, v in r.items() if k not in ("cluster_map", "brain")} for r in km_rows])
    save_figure(fig, out_png, per_volume)
