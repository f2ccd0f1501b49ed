"""One attention call per run of equal-length sequences against one call per sequence, in one process.

``neurovfm.models.attention.varlen_attention`` with the ``sdpa_loop`` back end (the CPU's for packs above 512
tokens) calls ``scaled_dot_product_attention`` on [G, H, n, Dh] for each run of G consecutive sequences of n tokens;
before, it made one [1, H, n, Dh] call per sequence. HLIP's packs are runs: every volume is cut to ``max_tokens``
(128 on the demo), 64 volumes a step. Pretraining crops and whole volumes for features rarely repeat a length, so
they keep one call per sequence.

1. Attention alone, forward and forward + backward, on packs like the demo's (median of ``--repeats`` alternating
   timings): the outputs and gradients of both paths must be equal bit for bit; as a positive control, a pack
   with one query changed must not be.
2. With ``--results`` (a run's results folder with shards and ``private/{run}/reports.jsonl`` beside it): HLIP's
   pretraining (``pretrain.models.tiny_hlip``) for ``--steps`` steps with each path, one after the other from the same
   seed, after an untimed 2-step warm-up, alternating ``--hlip-repeats`` times; the losses of every step must be
   equal; median seconds of each and their ratio.

Usage: python benchmarks/attention_runs.py OUT.json [--repeats 5] [--results results/demo --steps 30
       --hlip-repeats 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import neurovfm.models.attention as attention  # noqa: E402
from benchmarks.attention_cpu import random_pack  # noqa: E402
from neurovfm import pipeline  # noqa: E402
from neurovfm.config import load_config  # noqa: E402

PACKS = {
    "HLIP batch (64 x 128)": [128] * 64,
    "HLIP batch with short volumes": [128] * 20 + [90] + [128] * 30 + [40, 128, 128] + [128] * 10,
    "pretrain batch (8 crops)": [1400, 900, 2100, 700, 1600, 1100, 2500, 800],
}
RUNS = attention.equal_length_runs


def one_per_sequence(lengths: list[int]) -> list[tuple[int, int]]:
    """The former grouping: every sequence a run of its own."""
    return [(n, 1) for n in lengths]


def use(grouping) -> None:
    attention.equal_length_runs = grouping


def attend(q, k, v, cu, grouping, backward: bool):
    use(grouping)
    leaves = [x.clone().requires_grad_(backward) for x in (q, k, v)]
    t0 = time.perf_counter()
    out = attention.varlen_attention(*leaves, cu, int(cu.diff().max()), backend="sdpa_loop")
    grads = torch.autograd.grad(out.sum(), leaves) if backward else ()
    return time.perf_counter() - t0, out.detach(), grads


def attention_rows(repeats: int) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    rows = []
    for name, lengths in PACKS.items():
        cu, q, k, v = random_pack(lengths, gen)
        for backward in (False, True):
            _, out_a, g_a = attend(q, k, v, cu, one_per_sequence, backward)
            _, out_b, g_b = attend(q, k, v, cu, RUNS, backward)
            same = torch.equal(out_a, out_b) and all(torch.equal(a, b) for a, b in zip(g_a, g_b))
            q2 = q.clone()
            q2[0, 0, 0] += 1.0
            control = not torch.equal(attend(q2, k, v, cu, RUNS, False)[1], out_a)
            if not (same and control):
                sys.exit(f"{name}: equal bit for bit {same}; a changed query changes the output {control}")
            times = {"per_sequence": [], "per_run": []}
            for r in range(repeats):
                order = [("per_sequence", one_per_sequence), ("per_run", RUNS)]
                for label, grouping in order if r % 2 == 0 else order[::-1]:
                    times[label].append(attend(q, k, v, cu, grouping, backward)[0])
            base, cur = statistics.median(times["per_sequence"]), statistics.median(times["per_run"])
            rows.append(
                {
                    "pack": name,
                    "calls_per_sequence": len(lengths),
                    "calls_per_run": len(RUNS(lengths)),
                    "pass": "forward + backward" if backward else "forward",
                    "per_sequence_ms": round(base * 1e3, 2),
                    "per_run_ms": round(cur * 1e3, 2),
                    "ratio": round(cur / base, 3),
                    "bit_identical": True,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    use(RUNS)
    return rows


def hlip_run(cfg: dict, results: Path, steps: int) -> tuple[float, list[float]]:
    """(seconds, losses) of one HLIP pretraining of ``steps`` steps on the run's train shards."""
    cfg = copy.deepcopy(cfg)
    cfg["pretrain"]["steps"] = steps
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        pipeline.pretrain(
            cfg,
            "tiny_hlip",
            results / "shards" / "train" / "index.json",
            results / "shards" / "train" / "stats.json",
            tmp,
            threads=1,
            reports=results.parent.parent / "private" / results.name / "reports.jsonl",
        )
        elapsed = time.perf_counter() - t0
        return elapsed, pd.read_csv(Path(tmp) / "metrics.csv")["loss"].tolist()


def hlip_steps(results: Path, steps: int, repeats: int) -> dict:
    cfg = load_config(ROOT / "config.yaml")
    hlip_run(cfg, results, 2)  # warm-up: imports, page cache, the tokenizer's first fit
    times: dict[str, list[float]] = {"per_sequence": [], "per_run": []}
    losses = {}
    for r in range(repeats):
        order = [("per_sequence", one_per_sequence), ("per_run", RUNS)]
        for label, grouping in order if r % 2 == 0 else order[::-1]:
            use(grouping)
            elapsed, losses[label] = hlip_run(cfg, results, steps)
            times[label].append(elapsed)
    use(RUNS)
    if losses["per_sequence"] != losses["per_run"]:
        sys.exit("HLIP's losses differ between the two paths")
    base, cur = statistics.median(times["per_sequence"]), statistics.median(times["per_run"])
    return {
        "steps": steps,
        "repeats": repeats,
        "per_sequence_s": round(base, 2),
        "per_run_s": round(cur, 2),
        "ratio": round(cur / base, 3),
        "losses_identical": True,
        "note": "whole pretraining calls after a warm-up (start-up and data included), one thread, median",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--results", type=Path, help="a run's results folder, e.g. results/demo (for the HLIP steps)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--hlip-repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    result = {"torch": torch.__version__, "threads": 1, "attention": attention_rows(args.repeats)}
    if args.results:
        result["hlip"] = hlip_steps(args.results, args.steps, args.hlip_repeats)
        print(json.dumps(result["hlip"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
