"""Extended Data Fig. 5a-b style view of Vol-JEPA masking on the train split: context / target /
background over 8 consecutive token slabs for one MRI and one CT volume in both configurations, and
histograms of the per-sample context fraction by modality over one batch of ``pretrain.figure_samples``
samples, medians marked. The samples are drawn exactly as pretraining draws its first batch."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from neurovfm.jepa.collate import Collator, Sample
from neurovfm.jepa.masking import CONTEXT_BLOCK, MODE_NAMES, MULTI_BLOCK
from neurovfm.jepa.stream import BatchStream, EpochItems
from neurovfm.plots import plt, save_figure
from neurovfm.store.dataset import LazyVolume, VolumeDataset

log = logging.getLogger("neurovfm")
N_SLABS = 8
COLORS = {"MR": "tab:orange", "CT": "tab:blue"}
CONTEXT_RGBA, TARGET_RGBA = (0.12, 0.47, 0.95, 0.55), (1.0, 0.55, 0.0, 0.45)


def _batch(cfg: dict, dataset) -> tuple[list[dict], Collator]:
    p = cfg["pretrain"]
    data = EpochItems(dataset)
    stream = BatchStream(
        data.dataset.volumes,
        int(p["figure_samples"]),
        seed=int(cfg["seed"]),
        ct_fraction=p["ct_fraction"],
        min_foreground=int(p["min_foreground_tokens"]),
    )
    keys = next(iter(stream))
    return [data[k] for k in keys], Collator(p, cfg["preprocess"]["patch"], seed=int(cfg["seed"]))


def _example(items: list[dict], modality: str) -> dict | None:
    """The deepest volume of ``modality`` in the batch (most token slabs to show)."""
    pool = [it for it in items if it["modality"] == modality]
    return max(pool, key=lambda it: it["token_mask"].shape[0]) if pool else None


def _overlay(sample: Sample, patch) -> np.ndarray:
    """RGBA [z, Y, X] over the voxels of each token slab: context, target, transparent background."""
    grid = np.zeros((*sample.grid, 4))
    flat = grid.reshape(-1, 4)
    fg = np.flatnonzero(sample.fg_grid.numpy().reshape(-1))
    flat[fg[sample.context.numpy()]] = CONTEXT_RGBA
    flat[fg[sample.target.numpy()]] = TARGET_RGBA
    return grid.repeat(patch[1], 1).repeat(patch[2], 2)


def _draw_examples(fig, gs, examples: list[tuple[str, int, Sample]], patch) -> None:
    for row, (modality, mode, sample) in enumerate(examples):
        image = sample.image[0].numpy()
        overlay = _overlay(sample, patch)
        lo, hi = np.percentile(image, [1, 99])
        for z in range(N_SLABS):
            ax = fig.add_subplot(gs[row, z])
            ax.set_xticks([])
            ax.set_yticks([])
            if z < sample.grid[0]:
                ax.imshow(image[z * patch[0] + patch[0] // 2], cmap="gray", vmin=lo, vmax=hi)
                ax.imshow(overlay[z])
            else:
                ax.set_facecolor("0.9")
            if row == 0:
                ax.set_title(f"z={z}", fontsize=8)
            if z == 0:
                ax.set_ylabel(f"{modality}\n{MODE_NAMES[mode].replace('_', ' ')}", fontsize=8)


def make_figure(cfg: dict, index_path: Path, stats_path: Path, out_png: Path) -> dict:
    dataset = VolumeDataset(
        index_path, stats_path, ct_window_probs=cfg["pretrain"]["ct_window_probs"], seed=cfg["seed"], lazy=True
    )
    return draw(cfg, dataset, out_png)


def draw(cfg: dict, dataset, out_png: Path) -> dict:
    """The figure from any dataset with VolumeDataset's interface; returns the medians by modality."""
    items, collate = _batch(cfg, dataset)
    samples = collate.samples(items)
    table = pd.DataFrame(
        {
            "sample": range(len(samples)),
            "modality": [s.modality for s in samples],
            "config": [MODE_NAMES[s.mode] for s in samples],
            "n_foreground": [int(s.fg_grid.sum()) for s in samples],
            "n_context": [int(s.context.sum()) for s in samples],
        }
    )
    table["context_fraction"] = table["n_context"] / table["n_foreground"]
    medians = table.groupby("modality")["context_fraction"].median().to_dict()

    examples = []
    for modality in ("MR", "CT"):
        item = _example(items, modality)
        if item is None:
            continue
        if isinstance(item["image"], LazyVolume):  # the drawn example shows its crop's voxels
            item = {**item, "image": item["image"].full()}
        for mode in (MULTI_BLOCK, CONTEXT_BLOCK):
            examples.append((modality, mode, collate.sample(item, mode, collate.rng(item["epoch"], item["offset"], 0))))

    rows = max(len(examples), 1)
    fig = plt.figure(figsize=(13, 1.7 * rows + 3.2))
    gs = fig.add_gridspec(rows + 2, N_SLABS, height_ratios=[1] * rows + [0.25, 1.9])
    _draw_examples(fig, gs, examples, collate.patch)
    ax = fig.add_subplot(gs[rows + 1, :])
    bins = np.linspace(0, max(0.4, float(table["context_fraction"].max()) + 0.02), 41)
    for modality, group in table.groupby("modality"):
        ax.hist(
            group["context_fraction"],
            bins=bins,
            alpha=0.6,
            color=COLORS.get(modality),
            label=f"{modality} (n={len(group)}), median {100 * medians[modality]:.1f}%",
        )
        ax.axvline(medians[modality], color=COLORS.get(modality), ls="--")
    ax.set_xlabel("visible context fraction of the crop's foreground tokens")
    ax.set_ylabel("samples")
    ax.legend(frameon=False)
    fig.suptitle(
        f"Vol-JEPA masking: context (blue), target (orange), background (clear); batch of {len(samples)}", fontsize=10
    )
    save_figure(fig, out_png, table)
    log.info(
        "masking figure: context fraction medians %s over %d samples",
        {m: round(100 * v, 1) for m, v in medians.items()},
        len(samples),
    )
    return medians
