"""Vol-JEPA pretraining on the CPU with its batches prepared in the training process (``pretrain.workers: 0``) or in
one loader worker process (``workers: 1``), on one run's train shards, in one run of this script.

Every item of a batch carries its own (epoch, offset), which seeds its crop, augmentation, masks and CT window, so
the worker must change nothing: the encoder weights of the two settings are compared tensor by tensor (they must be
equal). As a positive control of that comparison, a third run with another seed must differ.

Each setting trains ``--steps`` steps of the demo's main model (one training thread, as the workflow's pretraining
job), alternating, ``--repeats`` times, in fresh subprocesses; wall and CPU seconds (this process's children,
loader workers included) are taken from ``resource.getrusage``. With ``--busy`` a busy-loop process occupies one
other core throughout (the workflow runs other jobs beside pretraining), so the worker competes for it.

Usage: python benchmarks/pretrain_workers.py OUT.json --results results/demo [--steps 100] [--repeats 2] [--busy]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = """
import sys, logging
sys.path.insert(0, {root!r})
from neurovfm import pipeline
from neurovfm.config import load_config
cfg = load_config()
cfg["pretrain"].update(steps={steps}, workers={workers}, progress_every_s=1000)
seed = {seed!r}
if seed is not None:
    cfg["pretrain"]["seed"] = seed
res = {results!r}
pipeline.pretrain(cfg, {model!r}, res + "/shards/train/index.json", res + "/shards/train/stats.json", {out!r}, threads=1)
"""


def busy() -> None:
    """Keep one core busy until terminated (the other jobs of the workflow beside the pretraining)."""
    spins = 0
    while True:
        spins += 1


def run(args, workers: int, out: Path, seed: int | None = None) -> dict:
    code = CHILD.format(
        root=str(ROOT),
        steps=args.steps,
        workers=workers,
        seed=seed,
        results=str(args.results),
        model=args.model,
        out=str(out),
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu}


def weights(out: Path) -> dict:
    return torch.load(out / "encoder.pt", map_location="cpu", weights_only=False)


def equal(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--busy", action="store_true")
    args = ap.parse_args()
    hog = mp.Process(target=busy, daemon=True) if args.busy else None
    if hog:
        hog.start()
    times = {0: [], 1: []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            for r in range(args.repeats):
                for w in (0, 1):
                    out = tmp / f"w{w}_r{r}"
                    times[w].append(run(args, w, out))
                    print(f"workers {w}, repeat {r}: {times[w][-1]}", flush=True)
            control = tmp / "control"
            run(args, 0, control, seed=12345)
            same = equal(weights(tmp / "w0_r0"), weights(tmp / "w1_r0"))
            control_differs = not equal(weights(tmp / "w0_r0"), weights(control))
    finally:
        if hog:
            hog.terminate()
    med = {w: {k: statistics.median(t[k] for t in times[w]) for k in ("wall_s", "cpu_s")} for w in times}
    result = {
        "steps": args.steps,
        "model": args.model,
        "busy_core": args.busy,
        "repeats": args.repeats,
        "workers_0": med[0],
        "workers_1": med[1],
        "wall_ratio_1_to_0": round(med[1]["wall_s"] / med[0]["wall_s"], 3),
        "cpu_ratio_1_to_0": round(med[1]["cpu_s"] / med[0]["cpu_s"], 3),
        "weights_equal": same,
        "control_other_seed_differs": control_differs,
        "all_runs": {str(w): times[w] for w in times},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "all_runs"}, indent=2))
    if not same or not control_differs:
        raise SystemExit("the worker changed the weights, or the comparison could not see another seed")


if __name__ == "__main__":
    main()
