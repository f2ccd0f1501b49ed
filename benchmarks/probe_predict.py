"""Probe prediction over whole bags: ``study_logits`` (the logits alone) against ``forward`` (logits and the [N, K]
attention matrix, the former prediction path), on one run's stored features, in one process.

Prediction runs after every epoch of every cross-validation fold and of the final fit (the held-out studies' whole
bags), about half of a probe job's time on the demo. For one (encoder, modality) a probe with random weights and the
training tokens' standardisation is built, and both paths predict the train split's whole bags, alternating, on one
thread; the median seconds of ``--repeats`` passes of each and their ratio are reported. The two must give the same
logits (largest difference under 1e-4); as a positive control of that check, the same comparison against a probe
whose class bias moved by 1e-3 must fail it.

Usage: python benchmarks/probe_predict.py OUT.json --results results/demo [--encoder tiny] [--modality ct]
       [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
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
from neurovfm.models.probes import build_probe  # noqa: E402
from neurovfm.probes.bags import load_bagsets, read_label_table  # noqa: E402
from neurovfm.probes.train import token_batches  # noqa: E402

TOLERANCE = 1e-4


@torch.no_grad()
def logits(model, bags, max_tokens: int, path: str) -> tuple[np.ndarray, float]:
    """(logits [studies, classes], seconds) of one pass over every bag."""
    model.eval()
    out = np.zeros((len(bags), len(bags.class_names)))
    t0 = time.perf_counter()
    for batch in token_batches(bags, max_tokens):
        tokens, cu = bags.pack(batch)
        out[batch] = (model(tokens, cu)[0] if path == "forward" else model.study_logits(tokens, cu)).double().numpy()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--encoder", default="tiny")
    ap.add_argument("--modality", default="ct", choices=("ct", "mri"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    settings = load_config()["probes"]
    labels, names = read_label_table(args.results / "labels" / f"{args.modality}.csv", args.modality)
    bags = load_bagsets(args.results / "features" / args.encoder, labels, names, args.modality, splits=("train",))
    train = bags["train"]
    for i in range(len(train)):  # read every bag once (the probe caches them): time the model, not the disk
        train.bag(i)
    torch.manual_seed(0)
    model = build_probe(
        settings["kind"], train.dim, len(names), hidden=settings["hidden"], attn_hidden=settings["attn_hidden"]
    )
    model.input_norm.set_stats(*train.token_stats())
    seconds: dict[str, list[float]] = {"forward": [], "study_logits": []}
    results = {}
    for _ in range(args.repeats):
        for path in seconds:
            results[path], t = logits(model, train, settings["eval_max_tokens"], path)
            seconds[path].append(t)
    diff = float(np.abs(results["forward"] - results["study_logits"]).max())
    if not diff < TOLERANCE:
        sys.exit(f"study_logits differs from forward by {diff:.2e} (tolerance {TOLERANCE:g})")
    moved = copy.deepcopy(model)
    moved.bias.data += 1e-3
    control = float(
        np.abs(results["forward"] - logits(moved, train, settings["eval_max_tokens"], "study_logits")[0]).max()
    )
    if not control >= TOLERANCE:
        sys.exit(f"positive control failed: a bias moved by 1e-3 changed the logits by only {control:.2e}")
    fwd, new = statistics.median(seconds["forward"]), statistics.median(seconds["study_logits"])
    result = {
        "encoder": args.encoder,
        "modality": args.modality,
        "studies": len(train),
        "tokens": int(train.n_tokens.sum()),
        "forward_s": round(fwd, 3),
        "study_logits_s": round(new, 3),
        "ratio_study_logits_over_forward": round(new / fwd, 3),
        "max_abs_logit_difference": diff,
        "control_bias_moved_1e-3_difference": control,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
