"""Does the trained study-level probe look at the lesion? Attention localisation on the demo's test studies.

For every test study with a positive finding whose report gives a side, the workflow's probe
(``results/{run}/probes/{encoder}/{modality}/probe.pt``) is applied to the study's frozen features and its attention
for that class is read (the same functions ``neurovfm predict`` draws its summary's overlays with). Scored per
finding (:mod:`neurovfm.analysis.attention_localisation`): the peak's side against the report's side, and the share
of the volume's tokens closer to the ground-truth lesion centre than the peak (0.5: chance); over every such finding
and over those the probe detects (test prediction at its validation threshold). Two controls run on the
same findings: ``oracle`` (attention on the token nearest the lesion; must give side 1.0 and percentile 0) and
``random`` (must give about 0.5 on both).

    python benchmarks/attention_localisation.py benchmarks/results/attention_localisation/tiny.csv \\
        --run-dir results/demo --encoder tiny

Writes the per-finding CSV, a summary CSV (``*_summary.csv``) and a figure (``.png``/``.pdf``) next to it.
The synthetic export's ground truth (``pacs_export/truth``) is required: a real export has none.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from neurovfm.analysis.attention_localisation import SOURCES, lesion_targets, localise, peak_entry, summarise
from neurovfm.config import load_config
from neurovfm.ingest.deid import keyed_hash, resolve_key
from neurovfm.probes.attention import study_attention
from neurovfm.probes.bags import load_bagsets, read_label_table
from neurovfm.probes.checkpoint import load_probe
from neurovfm.probes.predictions import MODALITIES, laterality_map
from neurovfm.store.index import load_index
from neurovfm.utils.atomic import write_csv

log = logging.getLogger("neurovfm")


def truth_by_study(truth_dir: Path, key: bytes) -> dict[str, dict]:
    out = {}
    for path in sorted(truth_dir.glob("*.json")):
        rec = json.loads(path.read_text())
        out[keyed_hash(rec["study_instance_uid"], key, "study")] = rec
    return out


def run_modality(cfg, run_dir: Path, encoder: str, modality: str, truths: dict, rng) -> pd.DataFrame:
    probe_dir = run_dir / "probes" / encoder / modality
    model, meta = load_probe(probe_dir / "probe.pt")
    labels, names = read_label_table(run_dir / "labels" / f"{modality}.csv", MODALITIES[modality])
    if names != meta["class_names"]:
        raise ValueError(f"{probe_dir}: the probe's classes differ from labels/{modality}.csv")
    test = load_bagsets(
        run_dir / "features" / encoder,
        labels,
        names,
        MODALITIES[modality],
        splits=("test",),
        windows=meta["ct_windows"],
        cache_splits=(),
    )["test"]
    shards = load_index(run_dir / "shards" / "test" / "index.json")
    volumes = {v["series_id"]: v for v in shards["volumes"]}
    row_of = {sid: i for i, sid in enumerate(test.study_ids)}
    targets = lesion_targets(
        truths,
        laterality_map(run_dir / "labels" / "findings.jsonl"),
        names,
        {sid: test.labels[i] for sid, i in row_of.items()},
    )
    preds = pd.read_csv(probe_dir / "predictions.csv", dtype={"study_id": str, "split": str})
    preds = preds[preds["split"] == "test"].set_index("study_id")
    rows = []
    for t in targets:
        entries = study_attention(model, test, row_of[t.study_id])
        peak = peak_entry(entries, t.k)
        for r in localise(t, entries, volumes[peak["series_id"]], shards["patch"], shards["spacing_mm"], rng):
            detected = bool(preds.loc[t.study_id, f"pred:{t.diagnosis}"])
            rows.append({"modality": modality, "encoder": encoder, "detected": detected, **r})
    log.info("%s %s: %d lateralised positive findings in %d test studies", encoder, modality, len(targets), len(test))
    return pd.DataFrame(rows)


def plot(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    mods = list(summary["modality"].unique())
    width = 0.8 / len(SOURCES)
    for ax, (col, lo, hi, chance, title) in zip(
        axes,
        (
            ("side_accuracy", "side_ci_low", "side_ci_high", 0.5, "peak on the lesion's side"),
            (
                "distance_pct",
                "distance_pct_ci_low",
                "distance_pct_ci_high",
                0.5,
                "tokens nearer the lesion than the peak",
            ),
        ),
    ):
        for j, source in enumerate(SOURCES):
            d = summary[summary["source"] == source].set_index("modality").reindex(mods)
            x = np.arange(len(mods)) + (j - (len(SOURCES) - 1) / 2) * width
            err = np.vstack([d[col] - d[lo], d[hi] - d[col]])
            ax.bar(x, d[col], width, yerr=err, capsize=3, label=source)
        ax.axhline(chance, color="grey", lw=0.8, ls="--")
        ax.set_xticks(np.arange(len(mods)), [m.upper() for m in mods])
        ax.set_ylim(0, 1.05)
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    for ext in (".png", ".pdf"):
        fig.savefig(path.with_suffix(ext), dpi=150)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_csv", type=Path)
    ap.add_argument("--run-dir", type=Path, default=Path("results/demo"))
    ap.add_argument("--config", type=Path, default=Path("config.yaml"))
    ap.add_argument("--encoder", required=True)
    ap.add_argument("--modalities", nargs="+", default=list(MODALITIES))
    ap.add_argument("--n-boot", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = load_config(args.config)
    truths = truth_by_study(args.run_dir / "pacs_export" / "truth", resolve_key(cfg["deid"], cfg["run"]))
    rng = np.random.default_rng(args.seed)
    rows = pd.concat([run_modality(cfg, args.run_dir, args.encoder, m, truths, rng) for m in args.modalities])
    summary = pd.concat(
        [
            summarise(rows, args.n_boot, 0.05, args.seed).assign(findings="all"),
            summarise(rows[rows["detected"]], args.n_boot, 0.05, args.seed).assign(findings="detected"),
        ],
        ignore_index=True,
    )
    args.out_csv.parent.mkdir(parents=True, exist_ok=True)
    write_csv(args.out_csv, rows)
    write_csv(args.out_csv.with_name(args.out_csv.stem + "_summary.csv"), summary)
    plot(summary[summary["findings"] == "all"], args.out_csv.with_suffix(".png"))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
