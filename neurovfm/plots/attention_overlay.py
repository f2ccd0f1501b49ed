"""Fig. 3d: where the probe looks. For a test study with a lateralised finding (side from its report), the
class-specific attention of the classify-then-aggregate probe painted over the preprocessed volume.

Per modality the first study of the probe's ``attention.npz`` that is positive for a lateralised class is shown:
the entry (volume x window) holding most of that class's attention, its slice with the largest attention, the
image and the token attention (each token's weight spread over its 4 x 16 x 16 voxels).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from neurovfm.probes.attention import read_attention
from neurovfm.probes.predictions import laterality_map, read_predictions
from neurovfm.store.reader import ShardReader

from . import save_figure


def pick_case(index: dict, predictions: pd.DataFrame, lateral: dict) -> dict | None:
    """The first study of the attention file positive for a lateralised class: study, class, side, probability."""
    names = index["class_names"]
    seen = []
    for e in index["entries"]:
        if e["study_id"] not in seen:
            seen.append(e["study_id"])
    rows = predictions.set_index("study_id")
    for sid in seen:
        for cls, side in lateral.get(sid, {}).items():
            if cls in names and sid in rows.index and int(rows.at[sid, f"label:{cls}"]) == 1:
                return {
                    "study_id": sid,
                    "class": cls,
                    "side": side,
                    "k": names.index(cls),
                    "prob": float(rows.at[sid, f"prob:{cls}"]),
                }
    return None


def case_panels(index: dict, data, case: dict, shards: ShardReader, patch) -> dict:
    """Image slice, attention slice and provenance for one case."""
    best = None
    for e in index["entries"]:
        if e["study_id"] != case["study_id"]:
            continue
        key = f"{e['study_id']}/{e['series_id']}/{e['window']}"
        att = data[f"{key}/attention"].astype(np.float32)
        col = att[:, case["k"]] if att.shape[1] > 1 else att[:, 0]
        if best is None or col.sum() > best[0]:
            best = (float(col.sum()), e, col, data[f"{key}/coords"].astype(int))
    mass, e, col, coords = best
    vol_i = shards.position(e["series_id"])
    image = shards.channel(vol_i, e["window"]).astype(np.float32)
    grid = np.zeros(e["grid"], dtype=np.float32)
    grid[coords[:, 0], coords[:, 1], coords[:, 2]] = col
    dense = np.kron(grid, np.ones(patch, dtype=np.float32))[: image.shape[0], : image.shape[1], : image.shape[2]]
    z = int(np.argmax(dense.sum(axis=(1, 2))))
    return {
        "image": image[z],
        "attention": dense[z],
        "slice": z,
        "series_id": e["series_id"],
        "window": e["window"],
        "entry_attention_mass": mass,
    }


def fig3d(
    attention_npz: dict, predictions_csv: dict, findings_jsonl, shard_index, patch, encoder: str, out_png: str | Path
) -> pd.DataFrame:
    """``attention_npz`` / ``predictions_csv``: {modality: path} of one encoder's probes; ``shard_index``: the
    attention split's shards index."""
    lateral = laterality_map(findings_jsonl)
    shards = ShardReader(shard_index)
    cases = []
    for mod in ("ct", "mri"):
        index, data = read_attention(attention_npz[mod])
        preds, _ = read_predictions(predictions_csv[mod])
        case = pick_case(index, preds, lateral)
        if case is not None:
            cases.append((mod, case, case_panels(index, data, case, shards, patch)))
    fig, axes = plt.subplots(max(len(cases), 1), 2, figsize=(7, 3.4 * max(len(cases), 1)), squeeze=False)
    rows = []
    for r, (mod, case, p) in enumerate(cases):
        axes[r, 0].imshow(p["image"], cmap="gray")
        axes[r, 1].imshow(p["image"], cmap="gray")
        att = np.ma.masked_where(p["attention"] <= 0, p["attention"])
        axes[r, 1].imshow(att, cmap="inferno", alpha=0.6)
        axes[r, 0].set_title(f"{mod.upper()} {case['class'].replace('_', ' ')} ({case['side']})", fontsize=9)
        axes[r, 1].set_title(f"{encoder} attention, p = {case['prob']:.2f}", fontsize=9)
        rows.append(
            {
                "modality": mod,
                "study_id": case["study_id"],
                "class": case["class"],
                "side": case["side"],
                "prob": case["prob"],
                "series_id": p["series_id"],
                "window": p["window"],
                "slice": p["slice"],
                "entry_attention_mass": p["entry_attention_mass"],
            }
        )
    for ax in axes.ravel():
        ax.axis("off")
    if not cases:
        axes[0, 0].text(0.5, 0.5, "no test study with a lateralised positive finding", ha="center", va="center")
    save_figure(
        fig,
        out_png,
        pd.DataFrame(
            rows,
            columns=[
                "modality",
                "study_id",
                "class",
                "side",
                "prob",
                "series_id",
                "window",
                "slice",
                "entry_attention_mass",
            ],
        ),
    )
    return pd.DataFrame(rows)
