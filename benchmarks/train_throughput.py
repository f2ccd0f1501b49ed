"""Vol-JEPA training-step throughput: tokens/s, TFLOP/s, MFU and peak memory against batch size.

A step is what pretraining does: student encoder on the context, predictor, teacher on all foreground
tokens (no grad), AdamW step, EMA update. Batches are packed toy heads cut, augmented and masked by the
real collator (prepared before timing; their preparation time is reported separately). FLOPs are counted
analytically (model FLOPs: matmuls and attention, backward = 2 x forward, no recomputation):
  linear layers 2 x tokens x in x out; attention 4 x sum(l_i^2) x width per block (QK^T and AV).
MFU divides by the dense matmul rate measured in the same run: bf16 on CUDA, fp32 on the CPU (and, with
``--spec-tflops``, also by a datasheet peak, e.g. 989 for an H100 SXM's dense bf16: column ``mfu_spec``).

Several attention back ends are measured one after another with ``--attn-backends flash_attn torch_varlen
sdpa_masked`` (same model weights, same batches); a back end that cannot run here (not installed, needs CUDA or
bf16) is reported as skipped with the reason the attention module gives, one that fails while running (out of
memory included) as such, and the others still run. The JSON holds one entry per back end under ``backends``.

Usage: python benchmarks/train_throughput.py OUT.json [--model base] [--batch-sizes 16 32 64 128]
       [--steps 10] [--warmup 3] [--grid 9 14 14] [--grad-checkpointing] [--attn-backends NAME [NAME ...]]
       [--spec-tflops 989]
On the CPU it defaults to the tiny model, batch sizes 2 4 8 and 3 steps; the back end defaults to the one chosen
per call (``auto``).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neurovfm.config import default_config  # noqa: E402
from neurovfm.jepa.build import Student, build_models, model_config  # noqa: E402
from neurovfm.jepa.collate import Collator  # noqa: E402
from neurovfm.jepa.ema import ema_update  # noqa: E402
from neurovfm.jepa.toy import ToyVolumes  # noqa: E402
from neurovfm.jepa.train import autocast_dtype, jepa_step, param_groups  # noqa: E402
from neurovfm.models.attention import BACKENDS, varlen_attention  # noqa: E402
from neurovfm.models.packing import seqlens  # noqa: E402
from neurovfm.models.vit import VIT_SIZES  # noqa: E402

PREDICTORS = {"tiny": (96, 2, 4), "small": (384, 12, 6), "medium": (512, 12, 8), "base": (768, 12, 12)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(device: torch.device, n: int, iters: int, repeats: int = 5) -> float:
    """Dense matmul rate (the MFU denominator): best of ``repeats`` timings of ``iters`` products."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 * iters / best / 1e12


def transformer_flops(tokens: int, sq_sum: int, width: int, depth: int, mlp_ratio: float = 4.0) -> float:
    """Forward FLOPs of ``depth`` pre-norm blocks on a pack (qkv, proj, MLP, attention)."""
    linear = 2 * tokens * width * width * (3 + 1 + 2 * mlp_ratio)
    return depth * (linear + 4 * sq_sum * width)


def step_flops(batch, enc: dict, pred: tuple, patch_dim: int) -> float:
    """Model FLOPs of one training step on ``batch`` (student fwd+bwd, predictor fwd+bwd, teacher fwd)."""
    d, depth = enc["embed_dim"], enc["depth"]
    pd_, pdepth, _ = pred
    n_all, n_ctx, n_tgt = batch.patches.shape[0], batch.ctx_idx.numel(), batch.tgt_idx.numel()
    sq = lambda cu: int((seqlens(cu) ** 2).sum())  # noqa: E731
    teacher = 2 * n_all * patch_dim * d + transformer_flops(n_all, sq(batch.cu), d, depth)
    student = 2 * n_ctx * patch_dim * d + transformer_flops(n_ctx, sq(batch.cu_ctx), d, depth)
    pred_tokens = n_ctx + n_tgt
    pred_sq = int(((seqlens(batch.cu_ctx) + seqlens(batch.cu_tgt)) ** 2).sum())
    predictor = 2 * n_ctx * d * pd_ + transformer_flops(pred_tokens, pred_sq, pd_, pdepth) + 2 * n_tgt * pd_ * d
    return teacher + 3 * (student + predictor)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process RSS high-water mark (Linux: KiB)


def backend_unavailable(backend: str | None, device: torch.device, amp: torch.dtype | None) -> str | None:
    """Why ``backend`` cannot run a training step here (None: it can, or it is chosen per call): the
    attention module's own reason, from one tiny call on this device in the step's precision."""
    if backend is None:
        return None
    q = torch.zeros(2, 1, 8, device=device, dtype=amp or torch.float32)
    cu = torch.tensor([0, 2], dtype=torch.int32, device=device)
    try:
        varlen_attention(q, q, q, cu, 2, backend=backend)
    except RuntimeError as err:
        return str(err)
    return None


def measure_backend(
    backend: str | None,
    size: str,
    p: dict,
    patch,
    device: torch.device,
    amp,
    peak: float,
    batch_sizes: list[int],
    steps: int,
    args,
) -> list[dict]:
    """Timed rows (one per batch size, ascending; stops at the first out-of-memory) for one attention back end."""
    p = {**p, "models": {"bench": {**p["models"]["bench"], "attn_backend": backend}}}
    model = model_config(p, "bench", patch)
    torch.manual_seed(0)
    encoder, predictor, teacher = build_models(model)
    student = Student(encoder, predictor).to(device)
    teacher.to(device).eval()
    optimizer = torch.optim.AdamW(param_groups(student), lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05)
    collate = Collator(p, patch, seed=0)
    data = ToyVolumes(n=max(batch_sizes), grid=tuple(args.grid), seed=0)
    rows = []
    for bs in batch_sizes:
        items = [dict(data[i], epoch=0, offset=i, index=i) for i in range(bs)]
        t0 = time.perf_counter()
        batch = collate(items)
        prep_s = time.perf_counter() - t0
        batch = batch.to(device)
        flops = step_flops(batch, VIT_SIZES[size], PREDICTORS[size], batch.patches.shape[1])
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        try:
            times = []
            for i in range(args.warmup + steps):
                sync(device)
                t0 = time.perf_counter()
                jepa_step(student, teacher, batch, optimizer, 1.0, amp)
                optimizer.step()
                ema_update(teacher, student.encoder, 0.996)
                sync(device)
                if i >= args.warmup:
                    times.append(time.perf_counter() - t0)
        except torch.cuda.OutOfMemoryError:
            rows.append({"batch_size": bs, "oom": True})
            print(f"[{backend or 'auto'}] batch {bs}: out of memory", flush=True)
            break
        step_s = float(np.median(times))
        tflops = flops / step_s / 1e12
        row = {
            "batch_size": bs,
            "tokens": int(batch.patches.shape[0]),
            "context_tokens": int(batch.ctx_idx.numel()),
            "target_tokens": int(batch.tgt_idx.numel()),
            "step_s": step_s,
            "tokens_per_s": batch.patches.shape[0] / step_s,
            "volumes_per_s": bs / step_s,
            "tflop_per_step": flops / 1e12,
            "tflops": tflops,
            "mfu": tflops / peak,
            "mfu_spec": tflops / args.spec_tflops if args.spec_tflops else None,
            "peak_memory_mb": peak_memory_mb(device),
            "collate_s": prep_s,
            "oom": False,
        }
        rows.append(row)
        print(
            f"[{backend or 'auto'}] batch {bs}: {row['tokens']} tokens, {step_s * 1000:.1f} ms/step, "
            f"{row['tokens_per_s']:.0f} tokens/s, {tflops:.3f} TFLOP/s, MFU {100 * row['mfu']:.1f}%, "
            f"peak {row['peak_memory_mb']:.0f} MiB",
            flush=True,
        )
    del student, teacher, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def run(args) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cpu = device.type == "cpu"
    size = args.model or ("tiny" if cpu else "base")
    batch_sizes = args.batch_sizes or ([2, 4, 8] if cpu else [16, 32, 64, 128])
    steps = args.steps or (3 if cpu else 10)
    pdim, pdepth, pheads = PREDICTORS[size]
    cfg = default_config(
        pretrain={
            "models": {
                "bench": {
                    "encoder": size,
                    "predictor_dim": pdim,
                    "predictor_depth": pdepth,
                    "predictor_heads": pheads,
                    "grad_checkpointing": bool(args.grad_checkpointing),
                    "attn_backend": None,
                }
            }
        }
    )
    p = cfg["pretrain"]
    patch = cfg["preprocess"]["patch"]
    amp = autocast_dtype(p["precision"], device)
    peak = matmul_tflops(device, args.matmul_n or (2048 if cpu else 8192), args.matmul_iters or (3 if cpu else 50))
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if not cpu else platform.processor() or 'cpu'}), "
        f"torch {torch.__version__} (CUDA {torch.version.cuda}), matmul {'fp32' if cpu else 'bf16'} {peak:.2f} "
        f"TFLOP/s, model {size}, precision {'fp32' if amp is None else 'bf16 autocast'}",
        flush=True,
    )
    backends = []
    for backend in args.attn_backends or [None]:
        name = backend or "auto"
        reason = backend_unavailable(backend, device, amp)
        if reason is not None:
            print(f"[{name}] skipped: {reason}", flush=True)
            backends.append({"attn_backend": name, "status": "skipped", "reason": reason, "rows": []})
            continue
        try:
            rows = measure_backend(backend, size, p, patch, device, amp, peak, batch_sizes, steps, args)
        except RuntimeError as err:  # a kernel that fails on these shapes: reported, the next back end runs
            print(f"[{name}] failed: {err}", flush=True)
            backends.append({"attn_backend": name, "status": "failed", "reason": str(err), "rows": []})
            continue
        backends.append({"attn_backend": name, "status": "ok", "reason": None, "rows": rows})
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if not cpu else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "model": size,
        "predictor": dict(zip(("dim", "depth", "heads"), PREDICTORS[size])),
        "grad_checkpointing": bool(args.grad_checkpointing),
        "grid": list(args.grid),
        "precision": "fp32" if amp is None else "bf16",
        "matmul_tflops": peak,
        "spec_tflops": args.spec_tflops,
        "memory": "torch.cuda.max_memory_allocated" if not cpu else "process max RSS (cumulative)",
        "steps": steps,
        "warmup": args.warmup,
        "backends": backends,
    }


def best_mfu(entry: dict) -> dict | None:
    """The row of a back end's entry with the highest MFU (None when it has no timed row)."""
    timed = [r for r in entry["rows"] if not r["oom"]]
    return max(timed, key=lambda r: r["mfu"]) if timed else None


def table(result: dict) -> str:
    head = (
        f"{'backend':>12} {'batch':>6} {'tokens':>8} {'ms/step':>9} {'tokens/s':>10} {'TFLOP/s':>8} {'MFU %':>6} "
        f"{'peak MiB':>9}"
    )
    lines = [head]
    for entry in result["backends"]:
        name = entry["attn_backend"]
        if entry["status"] != "ok":
            lines.append(f"{name:>12} {entry['status']}: {entry['reason']}")
            continue
        for r in entry["rows"]:
            if r["oom"]:
                lines.append(f"{name:>12} {r['batch_size']:>6} {'out of memory':>8}")
                continue
            lines.append(
                f"{name:>12} {r['batch_size']:>6} {r['tokens']:>8} {1000 * r['step_s']:>9.1f} "
                f"{r['tokens_per_s']:>10.0f} {r['tflops']:>8.3f} {100 * r['mfu']:>6.1f} "
                f"{r['peak_memory_mb']:>9.0f}"
            )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="JSON result path")
    ap.add_argument("--model", choices=sorted(VIT_SIZES), help="encoder size (default: base on CUDA, tiny on CPU)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", help="volumes per step to try, ascending")
    ap.add_argument("--steps", type=int, help="timed steps per batch size")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument(
        "--grid",
        type=int,
        nargs=3,
        default=[9, 14, 14],
        help="token grid of each toy volume (default: the paper's median MRI, 36 x 224 x 224 voxels)",
    )
    ap.add_argument("--grad-checkpointing", action="store_true")
    ap.add_argument(
        "--attn-backends",
        "--attn-backend",
        nargs="+",
        choices=list(BACKENDS),
        help="attention back ends measured one after another (default: chosen per call)",
    )
    ap.add_argument(
        "--spec-tflops", type=float, help="datasheet dense peak of this device in the step's precision (adds mfu_spec)"
    )
    ap.add_argument("--matmul-n", type=int, help="matrix side of the timed matmul (default: 8192 CUDA, 2048 CPU)")
    ap.add_argument("--matmul-iters", type=int, help="matmuls per timing (default: 50 CUDA, 3 CPU)")
    args = ap.parse_args()
    result = run(args)
    print(table(result))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
