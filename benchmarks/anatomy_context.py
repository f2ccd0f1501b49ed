"""Anatomy-under-flips context diagnostic (:mod:`neurovfm.analysis.anatomy_context`) for several encoders.

Ridge readouts of each token's anatomical position (|x|, y, z in the head's frame) from frozen features of
randomly flipped and swapped volumes, fitted on train-split tokens and scored on validation-split tokens (the test
split is never read); R^2 with 95% intervals over validation patients and paired differences from random
weights. References on the same tokens: the position code alone, hand-crafted intensity statistics of the
token, its raw voxels. ``--control STEPS`` also trains the positive control (an encoder supervised on the
train split's token positions, :mod:`neurovfm.analysis.anatomy_supervised`) and scores it like the others.

    python benchmarks/anatomy_context.py benchmarks/results/anatomy_context.csv --run-dir results/demo \\
        --encoder random - --encoder tiny results/demo/pretrain/tiny/encoder.pt --control 300

Writes the CSV, a figure beside it (PNG and PDF) and prints the mean-R^2 table. ``--encoder NAME -`` with NAME
``random`` gives seeded random weights of the configured architecture.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neurovfm.analysis import anatomy_context as ac  # noqa: E402
from neurovfm.analysis.anatomy_run import truth_by_study  # noqa: E402
from neurovfm.analysis.synth_patients import iter_poses  # noqa: E402
from neurovfm.config import load_config  # noqa: E402
from neurovfm.features.encoders import load_frozen  # noqa: E402
from neurovfm.store.dataset import VolumeDataset  # noqa: E402
from neurovfm.store.stats import load_stats  # noqa: E402
from neurovfm.utils.atomic import write_csv  # noqa: E402
from neurovfm.utils.progress import Progress  # noqa: E402

log = logging.getLogger("neurovfm")
CONTROL = "supervised_anatomy"


def choose(dataset, known: set, max_volumes: int | None, seed: int) -> list[int]:
    """Volume positions with ground truth, at most ``max_volumes`` (seeded, in index order)."""
    pos = [i for i, v in enumerate(dataset.volumes) if v["study_id"] in known]
    if max_volumes is not None and len(pos) > max_volumes:
        pos = sorted(np.random.default_rng(seed).choice(pos, size=max_volumes, replace=False).tolist())
    return pos


def figure(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean = table[table["target"] == "mean"]
    mods = sorted(mean["modality"].unique())
    fig, axes = plt.subplots(1, len(mods), figsize=(5 * len(mods), 3.6), squeeze=False)
    for ax, mod in zip(axes[0], mods):
        t = mean[mean["modality"] == mod]
        y = np.arange(len(t))
        ax.barh(y, t["r2"], xerr=[t["r2"] - t["lo"], t["hi"] - t["r2"]], color="#4C72B0", capsize=3)
        ax.set_yticks(y, t["encoder"])
        ax.invert_yaxis()
        ax.set_xlabel("validation R^2, token position (mean of |x|, y, z)")
        ax.set_title(f"{mod}: anatomy under random flips")
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(path.with_suffix(f".{ext}"), dpi=150)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_csv")
    ap.add_argument("--run-dir", required=True, help="results/{run}: shards/{train,val}, pacs_export/truth")
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--encoder", nargs=2, action="append", metavar=("NAME", "ENCODER_PT"), default=[])
    ap.add_argument(
        "--control",
        type=int,
        default=0,
        metavar="STEPS",
        help="train the supervised positive control for STEPS steps (0: none)",
    )
    ap.add_argument("--control-batch", type=int, default=8)
    ap.add_argument("--control-lr", type=float, default=1e-3)
    ap.add_argument(
        "--control-crop",
        type=int,
        nargs=3,
        default=None,
        metavar=("Z", "Y", "X"),
        help="training crop of the control in tokens (default: pretrain.max_crop_tokens)",
    )
    ap.add_argument("--views", type=int, default=2, help="random orientations per volume")
    ap.add_argument("--tokens-per-view", type=int, default=48)
    ap.add_argument("--max-volumes", type=int, default=400, help="per split (seeded sample)")
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.1, 1.0, 10.0, 100.0, 1000.0])
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    run, out = Path(args.run_dir), Path(args.out_csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    truth = truth_by_study(cfg, run / "pacs_export/truth")
    by_uid = {rec["study_instance_uid"]: sid for sid, rec in truth.items()}
    poses = {by_uid[uid]: pose for uid, pose in iter_poses(cfg, by_uid)}
    stats = load_stats(run / "shards/train/stats.json")
    data = {s: VolumeDataset(run / f"shards/{s}/index.json", stats, ct_channels=["brain"]) for s in ("train", "val")}
    patch = tuple(int(p) for p in data["train"].reader.index["patch"])
    aug = cfg["pretrain"]["augment"]
    encoders = {}
    for name, path in args.encoder:
        # "-": seeded random weights of the configured architecture, whatever the name
        encoders[name] = load_frozen(
            "random" if path == "-" else name,
            cfg,
            None if path == "-" else path,
            seed=cfg["features"]["seed"],
            device=args.device,
        )[0].eval()
    if args.control:
        from neurovfm.analysis.anatomy_supervised import train_anatomy_encoder
        from neurovfm.jepa.build import model_config
        from neurovfm.jepa.checkpoint import save_encoder

        mcfg = model_config(cfg["pretrain"], cfg["pretrain"]["train"][0], cfg["preprocess"]["patch"])
        t0 = time.perf_counter()
        crop = args.control_crop or cfg["pretrain"]["max_crop_tokens"]
        enc, losses = train_anatomy_encoder(
            mcfg,
            data["train"],
            list(range(len(data["train"]))),
            poses,
            args.control,
            args.control_batch,
            args.control_lr,
            0.05,
            crop,
            float(aug["flip_p"]),
            float(aug["swap_inplane_p"]),
            args.seed,
            args.device,
        )
        save_encoder(out.with_name(out.stem + f"_{CONTROL}.pt"), enc, mcfg, args.control)
        log.info("positive control trained in %.0f s", time.perf_counter() - t0)
        encoders[CONTROL] = enc
    if not encoders:
        ap.error("give at least one --encoder or --control")
    views, skipped = {}, []
    for split, ds in data.items():
        pos = choose(ds, set(poses), args.max_volumes, args.seed)
        progress = Progress(len(pos), f"anatomy context {split}", unit="volumes", every_s=30.0)
        views[split], sk = ac.collect_views(
            ds,
            pos,
            poses,
            encoders,
            patch,
            args.views,
            args.tokens_per_view,
            float(aug["flip_p"]),
            float(aug["swap_inplane_p"]),
            args.seed,
            args.device,
            progress,
        )
        progress.close()
        skipped += [{**s, "split": split} for s in sk]
        log.info("%s: %d tokens of %d patients", split, len(views[split].target), len(set(views[split].group)))
    scores = {}
    pos_dim = next(iter(encoders.values())).embed_dim
    for name in ac.BASELINES:
        scores[name] = ac.score(
            ac.baseline_features(views["train"], name, pos_dim),
            views["train"],
            ac.baseline_features(views["val"], name, pos_dim),
            views["val"],
            args.alphas,
            args.n_boot,
            args.seed,
        )
    for name in encoders:
        scores[name] = ac.score(
            views["train"].features[name],
            views["train"],
            views["val"].features[name],
            views["val"],
            args.alphas,
            args.n_boot,
            args.seed,
        )
    reference = "random" if "random" in scores else None
    table = pd.DataFrame(ac.summary_rows(scores, reference, 0.05))
    for mod in table["modality"].unique():
        table.loc[table["modality"] == mod, "n_patients"] = len(set(views["val"].group[views["val"].modality == mod]))
    write_csv(out, table)
    if skipped:
        write_csv(out.with_name(out.stem + "_skipped.csv"), pd.DataFrame(skipped))
    figure(table, out)
    cols = [c for c in ("encoder", "modality", "r2", "lo", "hi", "diff", "diff_lo", "diff_hi") if c in table]
    print(table[table["target"] == "mean"][cols].round(3).to_string(index=False))


if __name__ == "__main__":
    main()
