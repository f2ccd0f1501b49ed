"""Per-volume attention on the CPU: the former 3D call against the current 4D call, in one run.

``neurovfm.models.attention.varlen_attention`` with the ``sdpa_loop`` back end (every pack above 512 tokens on
the CPU: the pretraining's crops and the feature extraction's whole volumes) runs one
``scaled_dot_product_attention`` per volume. The former code sliced each volume out of the pack and called it on
[H, n, Dh] tensors: torch then takes its unfused math path, and each slice's backward writes a zero tensor of the
whole pack. The current code splits the pack once and calls it on [1, H, n, Dh]: the fused flash kernel. This
script times both on the same packs (forward alone, as feature extraction runs it, and forward + backward, as pretraining does) and
checks both against a naive softmax(QK^T / sqrt(d)) V per volume in float64.

Reports, per pack, milliseconds of each and the ratio current / baseline (median of ``--repeats`` alternating
timings). Fails if either path differs from the float64 reference by more than 1e-4.
Usage: python benchmarks/attention_cpu.py OUT.json [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neurovfm.models.attention import seqlens, varlen_attention  # noqa: E402

# packs of volumes (tokens per volume) like the demo's: pretraining crops of the tiny model and whole volumes of
# feature extraction (4 heads of 32)
PACKS = {
    "pretrain batch (8 crops)": [1400, 900, 2100, 700, 1600, 1100, 2500, 800],
    "feature pack (4 volumes)": [3000, 2600, 3400, 2200],
    "HLIP batch (64 x 128)": [128] * 64,
}
HEADS, HEAD_DIM = 4, 32


def random_pack(lengths: list[int], gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """(cu_seqlens, q, k, v) of a pack of sequences of these lengths, standard normal [N, HEADS, HEAD_DIM]."""
    n = sum(lengths)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    return (cu, *(torch.randn(n, HEADS, HEAD_DIM, generator=gen) for _ in range(3)))


def former_loop(q, k, v, cu):
    """The former ``sdpa_loop``: a slice and one 3D [H, n, Dh] call per volume."""
    outs, start = [], 0
    for length in seqlens(cu).tolist():
        sl = slice(start, start + length)
        outs.append(
            F.scaled_dot_product_attention(
                q[sl].transpose(0, 1), k[sl].transpose(0, 1), v[sl].transpose(0, 1)
            ).transpose(0, 1)
        )
        start += length
    return torch.cat(outs, 0)


def current_loop(q, k, v, cu):
    return varlen_attention(q, k, v, cu, int(seqlens(cu).max()), backend="sdpa_loop")


def reference(q, k, v, cu):
    """softmax(QK^T / sqrt(d)) V per volume, float64."""
    outs, start = [], 0
    for length in seqlens(cu).tolist():
        sl = slice(start, start + length)
        a, b, c = (x[sl].double().transpose(0, 1) for x in (q, k, v))
        w = torch.softmax(a @ b.transpose(1, 2) / a.shape[-1] ** 0.5, dim=-1)
        outs.append((w @ c).transpose(0, 1))
        start += length
    return torch.cat(outs, 0)


def timed(fn, q, k, v, cu, backward: bool) -> float:
    t = time.perf_counter()
    out = fn(q, k, v, cu)
    if backward:
        out.sum().backward()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for name, lengths in PACKS.items():
        n = sum(lengths)
        cu, q, k, v = random_pack(lengths, gen)
        ref = reference(q, k, v, cu)
        err = {
            f: float((fn(q, k, v, cu).double() - ref).abs().max())
            for f, fn in (("baseline", former_loop), ("current", current_loop))
        }
        if max(err.values()) > 1e-4:
            raise SystemExit(f"{name}: attention differs from the float64 reference: {err}")
        for backward in (False, True):
            leaves = [x.clone().requires_grad_(backward) for x in (q, k, v)]
            times = {"baseline": [], "current": []}
            for fn in (former_loop, current_loop):  # warm-up
                timed(fn, *leaves, cu, backward)
            for r in range(args.repeats):
                order = (("baseline", former_loop), ("current", current_loop))
                for label, fn in order if r % 2 == 0 else order[::-1]:
                    times[label].append(timed(fn, *leaves, cu, backward))
            base, cur = statistics.median(times["baseline"]), statistics.median(times["current"])
            row = {
                "pack": name,
                "tokens": n,
                "pass": "forward + backward" if backward else "forward",
                "baseline_ms": round(base * 1e3, 1),
                "current_ms": round(cur * 1e3, 1),
                "ratio": round(cur / base, 3),
                "max_abs_err_baseline": err["baseline"],
                "max_abs_err_current": err["current"],
            }
            rows.append(row)
            print(
                f"{name:26s} {row['pass']:18s} {n:6d} tokens  baseline {row['baseline_ms']:8.1f} ms  "
                f"current {row['current_ms']:8.1f} ms  ratio {row['ratio']:.3f}",
                flush=True,
            )
    result = {"torch": torch.__version__, "threads": args.threads, "repeats": args.repeats, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
