"""HLIP's batch assembly: the former eager path against the current lazy one, in one run, on a run's shards.

HLIP keeps at most ``max_tokens`` foreground tokens of each volume (128 on the demo, of a few thousand). The former
collator received every volume as a whole float32 image (each voxel scaled and z-scored by the dataset), cut the
crop into all of its patches and then kept its rows. The current one receives a ``LazyVolume`` and reads and
normalises only the kept tokens (``neurovfm.store.dataset``, ``neurovfm.models.patch_embed.gather_tokens``).

Both paths run on the same items (the first ``--batches`` batches of the HLIP model's balanced study stream), with
the same draws; the script fails unless their patches and coordinates are bit-identical. Reports milliseconds per
batch of each (dataset item + collation; median of ``--repeats`` alternating passes) and the ratio current /
baseline.
Usage: python benchmarks/hlip_collate.py RUN_DIR OUT.json [--model tiny_hlip] [--batches 10] [--repeats 3]
(RUN_DIR: a run's results folder with shards, e.g. results/demo)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neurovfm.config import load_config  # noqa: E402
from neurovfm.hlip.collate import StudyCollator  # noqa: E402
from neurovfm.hlip.stream import BalancedStudyStream  # noqa: E402
from neurovfm.jepa.augment import crop_box, voxel_box  # noqa: E402
from neurovfm.models.patch_embed import patchify  # noqa: E402
from neurovfm.store.dataset import VolumeDataset  # noqa: E402


def former_volume(collate: StudyCollator, item: dict):
    """The former ``StudyCollator.volume``: crop the eager image, cut every patch, keep the drawn rows."""
    rng = np.random.default_rng([collate.seed, collate.rank, int(item["epoch"]), int(item["offset"])])
    mask = torch.as_tensor(item["token_mask"]).bool()
    box = crop_box(mask.numpy(), collate.max_crop, rng)
    image = item["image"][(slice(None), *voxel_box(box, collate.patch))]
    patches, coords = patchify(image.contiguous(), collate.patch)
    keep = torch.nonzero(mask[box].reshape(-1)).squeeze(1)
    if collate.max_tokens is not None and keep.numel() > collate.max_tokens:
        keep = keep[torch.from_numpy(np.sort(rng.choice(keep.numel(), collate.max_tokens, replace=False)))]
    return patches[keep].contiguous(), coords[keep].contiguous()


def run_pass(dataset: VolumeDataset, collate: StudyCollator, batches, volume_fn) -> tuple[float, list]:
    out, t0 = [], time.perf_counter()
    for batch in batches:
        for _b, offset, index in batch:
            item = {**dataset[index], "epoch": 0, "offset": offset}
            out.append(volume_fn(collate, item))
    return (time.perf_counter() - t0) / len(batches), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--model", default="tiny_hlip")
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(ROOT / "config.yaml")
    model = cfg["pretrain"]["models"][args.model]
    index, stats = args.run_dir / "shards/train/index.json", args.run_dir / "shards/train/stats.json"
    eager = VolumeDataset(index, stats)
    lazy = VolumeDataset(index, stats, lazy=True)
    studies = {v["study_id"] for v in eager.volumes}
    stream = BalancedStudyStream(
        eager.volumes,
        studies,
        int(model["batch_studies"]),
        seed=0,
        max_volumes=int(model["max_volumes"]),
        min_foreground=int(cfg["pretrain"]["min_foreground_tokens"]),
    )
    batches = [stream.batch(b) for b in range(args.batches)]
    collate = StudyCollator(cfg["pretrain"], cfg["preprocess"]["patch"], 0, {}, None, max_tokens=model["max_tokens"])
    times = {"baseline": [], "current": []}
    for _ in range(args.repeats):
        t_old, old = run_pass(eager, collate, batches, former_volume)
        t_new, new = run_pass(lazy, collate, batches, lambda c, it: c.volume(it)[:2])
        times["baseline"].append(t_old)
        times["current"].append(t_new)
        for (p0, c0), (p1, c1) in zip(old, new, strict=True):
            if not (torch.equal(p0, p1) and torch.equal(c0, c1)):
                sys.exit("the lazy collator's tokens differ from the former path's")
    base, cur = statistics.median(times["baseline"]), statistics.median(times["current"])
    result = {
        "run_dir": args.run_dir.name,
        "model": args.model,
        "batches": args.batches,
        "volumes": sum(len(b) for b in batches),
        "max_tokens": model["max_tokens"],
        "threads": args.threads,
        "baseline_ms_per_batch": round(1000 * base, 1),
        "current_ms_per_batch": round(1000 * cur, 1),
        "ratio_current_over_baseline": round(cur / base, 3),
        "bit_identical": True,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
