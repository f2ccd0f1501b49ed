"""Pretraining on the CPU with the collator reading only the tokens it keeps (lazy items, the trainers' default) or
the former way (each item's whole volume normalised, its crop oriented and cut into every patch), on one run's train
shards, in one run of this script.

The lazy path must change nothing: the encoder weights of the two settings are compared tensor by tensor (they must
be equal). As a positive control of that comparison, a third run with another seed must differ.

Each model trains ``--steps`` steps on one training thread (as the workflow's pretraining job), the two settings
alternating, ``--repeats`` times, in fresh subprocesses; wall and CPU seconds are taken from
``resource.getrusage``. The former path is the same code with a dataset that ignores the trainer's request for lazy
items.

Usage: python benchmarks/pretrain_lazy.py OUT.json --results results/demo [--models tiny tiny_mae] [--steps 60]
       [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.pretrain_workers import equal, weights  # noqa: E402  (one comparison of encoder weights)

CHILD = """
import sys
sys.path.insert(0, {root!r})
from neurovfm.config import load_config
from neurovfm.jepa.train import pretrain_seed, train
from neurovfm.store.dataset import VolumeDataset


class EagerDataset(VolumeDataset):
    # the former path: whole images whatever the trainer asks for
    lazy = property(lambda self: False, lambda self, value: None)


cfg = load_config()
cfg["pretrain"].update(steps={steps}, progress_every_s=1000)
seed = {seed!r}
if seed is not None:
    cfg["pretrain"]["seed"] = seed
res = {results!r}
cls = VolumeDataset if {lazy!r} else EagerDataset
dataset = cls(res + "/shards/train/index.json", res + "/shards/train/stats.json",
              ct_window_probs=cfg["pretrain"]["ct_window_probs"], seed=pretrain_seed(cfg))
train(cfg, {model!r}, dataset, {out!r}, threads=1)
"""


def run(args, model: str, lazy: bool, out: Path, seed: int | None = None) -> dict:
    code = CHILD.format(
        root=str(ROOT), steps=args.steps, seed=seed, results=str(args.results), lazy=lazy, model=model, out=str(out)
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--models", nargs="+", default=["tiny", "tiny_mae"])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    result, ok = {"steps": args.steps, "repeats": args.repeats, "models": {}}, True
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for model in args.models:
            times = {"eager": [], "lazy": []}
            for r in range(args.repeats):
                for name in ("eager", "lazy"):
                    times[name].append(run(args, model, name == "lazy", tmp / f"{model}_{name}_{r}"))
                    print(f"{model} {name}, repeat {r}: {times[name][-1]}", flush=True)
            run(args, model, True, tmp / f"{model}_control", seed=12345)
            same = equal(weights(tmp / f"{model}_eager_0"), weights(tmp / f"{model}_lazy_0"))
            differs = not equal(weights(tmp / f"{model}_lazy_0"), weights(tmp / f"{model}_control"))
            med = {n: {k: statistics.median(t[k] for t in times[n]) for k in ("wall_s", "cpu_s")} for n in times}
            result["models"][model] = {
                "eager": med["eager"],
                "lazy": med["lazy"],
                "wall_ratio_lazy_to_eager": round(med["lazy"]["wall_s"] / med["eager"]["wall_s"], 3),
                "cpu_ratio_lazy_to_eager": round(med["lazy"]["cpu_s"] / med["eager"]["cpu_s"], 3),
                "weights_equal": same,
                "control_other_seed_differs": differs,
                "all_runs": times,
            }
            ok = ok and same and differs
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    summary = {m: {k: v for k, v in r.items() if k != "all_runs"} for m, r in result["models"].items()}
    print(json.dumps(summary, indent=2))
    if not ok:
        raise SystemExit("the lazy path changed the weights, or the comparison could not see another seed")


if __name__ == "__main__":
    main()
