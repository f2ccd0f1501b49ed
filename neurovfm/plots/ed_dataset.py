"""Extended Data Fig. 3 style overview of the preprocessed dataset: volumes by modality and sequence
family, orientation, depth and in-plane size after preprocessing (medians marked), series per study,
studies per year (development cut-off marked), age by sex, label status per modality, and (h-i) the number of
positive studies per CT and MRI diagnosis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from neurovfm.plots import plt, save_figure
from neurovfm.store.index import load_index

SPLITS = ("train", "val", "test")
COLORS = {"CT": "tab:blue", "MR": "tab:orange"}


def _volumes(shards_dir: Path) -> pd.DataFrame:
    rows = []
    for split in SPLITS:
        for v in load_index(shards_dir / split / "index.json")["volumes"]:
            rows.append(
                {
                    "series_id": v["series_id"],
                    "modality": v["modality"],
                    "depth": v["shape"][0],
                    "height": v["shape"][1],
                    "width": v["shape"][2],
                }
            )
    return pd.DataFrame(rows, columns=["series_id", "modality", "depth", "height", "width"])


def _label_status(studies: pd.DataFrame, labels_dir: Path) -> pd.DataFrame:
    positive = {}
    for name in ("ct.csv", "mri.csv"):
        path = labels_dir / name
        if path.is_file():
            lab = pd.read_csv(path, dtype={"study_id": str})
            cols = [c for c in lab.columns if c not in ("study_id", "split")]
            positive.update(dict(zip(lab["study_id"], lab[cols].sum(axis=1) > 0)))
    status = []
    for sid, has_report in zip(studies["study_id"], studies["has_report"].astype(bool)):
        if not has_report or sid not in positive:
            status.append("unknown (no report)")
        else:
            status.append("remarkable" if positive[sid] else "unremarkable")
    return studies.assign(label_status=status)


def _prevalence(path: Path) -> pd.Series | None:
    """Positive studies per diagnosis (ontology column order) of a label table, or None without the file."""
    if not path.is_file():
        return None
    lab = pd.read_csv(path, dtype={"study_id": str})
    return lab[[c for c in lab.columns if c not in ("study_id", "split")]].sum(axis=0).astype(int)


def _bar(ax, table: pd.DataFrame, title: str):
    table.plot.bar(ax=ax, color=[COLORS.get(c, "gray") for c in table.columns], width=0.8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", labelsize=7, rotation=45)
    ax.set_xlabel("")


def make_figure(
    cfg: dict, series_csv: Path, studies_csv: Path, shards_dir: Path, labels_dir: Path, out_png: Path
) -> None:
    series = pd.read_csv(series_csv, dtype={"series_id": str, "study_id": str})
    studies = pd.read_csv(studies_csv, dtype={"study_id": str})
    vols = _volumes(shards_dir)
    studies = _label_status(studies, labels_dir)
    table = []

    def keep(panel, frame):
        for (cat, mod), val in frame.stack().items():
            table.append({"panel": panel, "category": str(cat), "modality": mod, "value": float(val)})

    fig = plt.figure(figsize=(20, 14))
    grid = fig.add_gridspec(3, 4, height_ratios=[1, 1, 1.1])
    axes = np.array([[fig.add_subplot(grid[r, c]) for c in range(4)] for r in range(2)])
    a = series.pivot_table(index="sequence", columns="modality", values="series_id", aggfunc="count").fillna(0)
    _bar(axes[0, 0], a, "a  volumes by sequence family")
    keep("a_sequence", a)
    b = series.pivot_table(index="orientation", columns="modality", values="series_id", aggfunc="count").fillna(0)
    _bar(axes[0, 1], b, "b  orientation")
    keep("b_orientation", b)
    for col, ax, panel in (("depth", axes[0, 2], "c_depth"), ("height", axes[0, 3], "c_inplane")):
        for mod, grp in vols.groupby("modality"):
            vals = grp[col] if col == "depth" else pd.concat([grp["height"], grp["width"]])
            ax.hist(vals, bins=20, alpha=0.6, color=COLORS.get(mod), label=f"{mod} (median {np.median(vals):g})")
            ax.axvline(np.median(vals), color=COLORS.get(mod), ls="--")
            table.append({"panel": panel, "category": "median", "modality": mod, "value": float(np.median(vals))})
        ax.set_title(
            f"c  {'depth (slices)' if col == 'depth' else 'in-plane size (voxels)'} after preprocessing", fontsize=9
        )
        ax.legend(fontsize=7)
    per_study = series.groupby(["study_id", "modality"]).size().rename("n").reset_index()
    d = per_study.pivot_table(index="n", columns="modality", values="study_id", aggfunc="count").fillna(0)
    _bar(axes[1, 0], d, "d  series per study")
    keep("d_series_per_study", d)
    e = studies.pivot_table(index="study_year", columns="modality", values="study_id", aggfunc="count").fillna(0)
    _bar(axes[1, 1], e, f"e  studies per year (cut-off {cfg['splits']['cutoff']})")
    keep("e_year", e)
    ages = pd.to_numeric(studies["age"], errors="coerce")
    bins = (ages // 5 * 5).astype("Int64")
    f = (
        studies.assign(age_bin=bins)
        .pivot_table(index="age_bin", columns="sex", values="study_id", aggfunc="count")
        .fillna(0)
    )
    f.plot.bar(ax=axes[1, 2], width=0.8)
    axes[1, 2].set_title("f  studies by age (5-year bins) and sex", fontsize=9)
    axes[1, 2].tick_params(axis="x", labelsize=7)
    keep("f_age_sex", f)
    g = studies.pivot_table(index="label_status", columns="modality", values="study_id", aggfunc="count").fillna(0)
    _bar(axes[1, 3], g, "g  label status")
    keep("g_label_status", g)
    for name, mod, ax, letter in (
        ("ct.csv", "CT", fig.add_subplot(grid[2, :2]), "h"),
        ("mri.csv", "MR", fig.add_subplot(grid[2, 2:]), "i"),
    ):
        prevalence = _prevalence(labels_dir / name)
        if prevalence is None:
            ax.text(0.5, 0.5, f"no {name}", ha="center", va="center")
            continue
        shown = prevalence[prevalence > 0]
        ax.bar(range(len(shown)), shown.to_numpy(), color=COLORS.get(mod, "gray"))
        ax.set_yscale("log")
        ax.set_xticks(range(len(shown)))
        ax.set_xticklabels([n.replace("_", " ") for n in shown.index], rotation=75, ha="right", fontsize=6)
        ax.set_ylabel("positive studies")
        ax.set_title(
            f"{letter}  {mod} diagnoses with positives: {len(shown)} of {len(prevalence)} "
            f"(ontology order; zero-count classes not drawn)",
            fontsize=9,
        )
        for label, n in prevalence.items():
            table.append({"panel": f"{letter}_prevalence", "category": label, "modality": mod, "value": float(n)})
    fig.suptitle(f"Dataset overview: {len(vols)} preprocessed volumes, {len(studies)} studies", fontsize=11)
    fig.tight_layout()
    save_figure(fig, out_png, pd.DataFrame(table))
