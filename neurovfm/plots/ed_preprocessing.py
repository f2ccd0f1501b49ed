"""Extended Data Fig. 1b-c style panel: one CT (three windows) and one MRI volume before and after
preprocessing, with the air-only foreground mask and the 4 x 16 x 16 token grid (background tokens shaded)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from neurovfm.plots import plt, save_figure
from neurovfm.preprocess import source
from neurovfm.preprocess.orient import native_spacing
from neurovfm.preprocess.volume import plan, process
from neurovfm.store.reader import ShardReader

SPLITS = ("train", "val", "test")


def _pick(shards_dir: Path, modality: str):
    for split in SPLITS:
        reader = ShardReader(shards_dir / split / "index.json")
        for i, v in enumerate(reader.volumes):
            if v["modality"] == modality:
                return reader, i
    return None, None


def _grid(ax, shape, patch, tokens):
    """Token grid lines and shading of background tokens on an in-plane slice."""
    rows, cols = shape
    pr, pc = patch
    shade = np.kron(~tokens, np.ones((pr, pc)))
    ax.imshow(np.ma.masked_where(shade == 0, shade), cmap="Reds", alpha=0.35, vmin=0, vmax=1)
    for r in range(0, rows + 1, pr):
        ax.axhline(r - 0.5, color="yellow", lw=0.3)
    for c in range(0, cols + 1, pc):
        ax.axvline(c - 0.5, color="yellow", lw=0.3)


def make_figure(
    cfg: dict, series_csv: Path, files_csv: Path, export_root: Path, shards_dir: Path, out_png: Path
) -> None:
    pcfg = cfg["preprocess"]
    patch = pcfg["patch"]
    series = pd.read_csv(series_csv, dtype=str).set_index("series_id")
    files = source.index_files_csv(files_csv)
    loader = source.LOADERS[cfg["input"]["kind"]]
    fig, axes = plt.subplots(2, 5, figsize=(17, 7.5))
    rows = []
    for r, modality in enumerate(("CT", "MR")):
        reader, i = _pick(shards_dir, modality)
        for ax in axes[r]:
            ax.axis("off")
        if reader is None:
            axes[r, 0].set_title(f"no {modality} volume in the shards")
            continue
        entry = reader.volumes[i]
        row = series.loc[entry["series_id"]]
        affine = np.asarray(json.loads(row["affine_lps"]), dtype=float).reshape(4, 4)
        shape = (int(row["n_slices"]), int(row["rows"]), int(row["cols"]))
        paths = [export_root / p for p in source.read_paths(files_csv, *files[entry["series_id"]])]
        raw = loader(paths, affine, shape)
        mid_raw = raw[shape[0] // 2].copy()
        res = process(raw.astype(np.float32), affine, modality, plan(affine, shape, pcfg), pcfg, keep_voxel_mask=True)
        s = entry["shape"][0] // 2
        tok = reader.token_mask(i)[s // patch[0]]
        lo, hi = (-40, 120) if modality == "CT" else np.percentile(mid_raw, pcfg["mr_percentiles"])
        axes[r, 0].imshow(mid_raw, cmap="gray", vmin=lo, vmax=hi)
        axes[r, 0].set_title(
            f"{modality} native slice {shape[0] // 2}\n{shape} @ "
            f"{tuple(round(x, 2) for x in native_spacing(affine))} mm",
            fontsize=8,
        )
        names = reader.channels(i)
        for c, name in enumerate(names):
            axes[r, 1 + c].imshow(reader.channel(i, name)[s], cmap="gray", vmin=0, vmax=255)
            bits = next(ch["bits"] for ch in reader.layout(i) if ch["name"] == name)
            axes[r, 1 + c].set_title(
                f"{name} ({bits}-bit), slice {s}\n{tuple(entry['shape'])} @ {tuple(pcfg['spacing_mm'])} mm", fontsize=8
            )
        last = axes[r, 4]
        last.imshow(reader.channel(i, names[0])[s], cmap="gray", vmin=0, vmax=255)
        last.contour(res.voxel_mask[s], levels=[0.5], colors="cyan", linewidths=0.6)
        _grid(last, entry["shape"][1:], patch[1:], tok)
        n_tok = int(np.prod(entry["mask"]["shape"]))
        last.set_title(f"foreground (cyan), tokens {entry['mask']['n_foreground']}/{n_tok} kept", fontsize=8)
        rows.append(
            {
                "modality": modality,
                "series_id": entry["series_id"],
                "native_shape": str(shape),
                "native_spacing_mm": str(tuple(round(x, 3) for x in native_spacing(affine))),
                "shape": str(tuple(entry["shape"])),
                "channels": ";".join(names),
                "tokens": n_tok,
                "foreground_tokens": entry["mask"]["n_foreground"],
                "voxel_foreground_fraction": round(float(res.voxel_mask.mean()), 4),
            }
        )
    fig.suptitle(
        "Series preprocessing: 1 x 1 x 4 mm, CT windows / MRI percentile scaling, air-only masks, "
        f"{tuple(patch)} tokens"
    )
    save_figure(fig, out_png, pd.DataFrame(rows))
