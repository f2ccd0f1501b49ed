"""The one-page summary of a study (``summary.png`` + ``summary.pdf``): triage level, the positive diagnoses (at
the validation thresholds) then the others by calibrated probability, the generated findings, and the probe's attention over the most-attended slice
for the top positive diagnoses (drawn by :func:`neurovfm.plots.attention_overlay.case_panels`, the Fig. 3d
code). Only hashed ids appear on it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from neurovfm.plots import plt, save_figure
from neurovfm.plots.attention_overlay import case_panels

LEVEL_COLOURS = {"urgent": "#c0392b", "routine": "#d68910", "unremarkable": "#1e8449", None: "#7f8c8d"}


def overlay_panels(record: dict, att_index: dict, att_data: dict, shards, patch, n: int) -> list[dict]:
    """Image and attention slices of the first ``n`` diagnoses of ``record['attention']``."""
    names = att_index["class_names"]
    out = []
    for a in record["attention"][:n]:
        case = {"study_id": record["study"]["study_id"], "k": names.index(a["diagnosis"])}
        out.append(
            {"diagnosis": a["diagnosis"], "side": a["side"], **case_panels(att_index, att_data, case, shards, patch)}
        )
    return out


def draw_summary(record: dict, panels: list[dict], top_n: int, out_png: str | Path) -> None:
    n_img = max(len(panels), 1)
    fig = plt.figure(figsize=(8.27, 10.0))
    grid = fig.add_gridspec(3, n_img * 2, height_ratios=[0.75, 0.75, 1.5])
    level = record["triage"]
    study = record["study"]
    fig.suptitle(
        f"{study['modality']} study {study['study_id']} — triage: {level or 'not available'}",
        fontsize=13,
        color=LEVEL_COLOURS.get(level, "#000000"),
        fontweight="bold",
    )
    ax = fig.add_subplot(grid[0, :])
    ax.axis("off")
    rows = sorted(record["diagnoses"], key=lambda r: (not r["positive"], -r["calibrated_probability"]))[:top_n]
    cells = [
        [
            r["name"].replace("_", " "),
            f"{r['calibrated_probability']:.2f}",
            f"{r['probability']:.2f}",
            "—" if r["threshold"] is None else f"{r['threshold']:.2f}",
            "yes" if r["positive"] else "no",
        ]
        for r in rows
    ]
    if cells:
        table = ax.table(
            cellText=cells,
            colLabels=["diagnosis", "calibrated p", "p", "threshold", "positive"],
            loc="upper center",
            cellLoc="left",
            colWidths=[0.46, 0.14, 0.1, 0.14, 0.12],
        )
        table.auto_set_font_size(False)
        table.set_fontsize(8)
    ax.set_title(
        f"Diagnoses: positive first, then by calibrated probability (probe {study['probe']}, bundle "
        f"{record['bundle_id']})",
        fontsize=10,
    )
    ax = fig.add_subplot(grid[1, :])
    ax.axis("off")
    gen = record["generated"]
    items = (
        gen["findings"] if gen["status"] == "ok" else ([f"(answer not a JSON list) {gen['raw']}"] if gen["raw"] else [])
    )
    text = "\n".join(textwrap.fill(f"• {f}", 100) for f in items[:8]) or "No key positive findings."
    ax.text(
        0.0,
        1.0,
        "Generated key findings\n\n" + text,
        va="top",
        ha="left",
        fontsize=9,
        family="sans-serif",
        transform=ax.transAxes,
    )
    n_ex = sum(e["n_files"] for e in record["excluded"])
    reasons = sorted({e["reason"] for e in record["excluded"]})
    ax.text(
        0.0,
        0.05,
        f"Series used: {sum(s['encoded'] for s in study['series'])} of {len(study['series'])}; "
        f"excluded files: {n_ex}" + (f" ({', '.join(reasons)})" if reasons else ""),
        fontsize=8,
        transform=ax.transAxes,
    )
    for i, p in enumerate(panels):
        for j in range(2):
            a = fig.add_subplot(grid[2, 2 * i + j])
            a.imshow(p["image"], cmap="gray")
            if j:
                att = np.ma.masked_where(p["attention"] <= 0, p["attention"])
                a.imshow(att, cmap="inferno", alpha=0.6)
                a.set_title(f"attention ({p['side']})", fontsize=8)
            else:
                a.set_title(f"{p['diagnosis'].replace('_', ' ')}\n{p['window']}, slice {p['slice']}", fontsize=8)
            a.axis("off")
    if not panels:
        a = fig.add_subplot(grid[2, :])
        a.axis("off")
        a.text(0.5, 0.5, "no positive diagnosis: no attention overlay", ha="center", va="center", fontsize=9)
    save_figure(fig, out_png)
