"""Bootstrap benchmark: vectorised study-level bootstrap vs a naive ``roc_auc_score`` loop.

Synthetic table the size of the paper's CT test set (82 classes x 21,054 studies), prevalences
log-spaced 0.1%..20%, float32 scores shifted by the label (per-class separation -> AUROC ~0.7-0.98,
float32 rounding produces some ties). Measures:
  * the full vectorised bootstrap (AUROC + sensitivity/specificity/balanced accuracy at a threshold
    per class, ``--n-boot`` replicates) end to end;
  * the naive loop (``sklearn.metrics.roc_auc_score`` per replicate x class on the SAME resamples)
    on a sample of replicates x classes, extrapolated to the full table (AUROC only, so the
    comparison favours the naive loop);
  * agreement on the sample: max |AUROC difference| per replicate and the percentile CIs computed
    from the sampled replicates by both.
Usage: python benchmarks/bootstrap.py OUT.json [--n-boot 10000] [--naive-reps 200] [--naive-classes 8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sklearn.metrics import roc_auc_score  # noqa: E402

from neurovfm.eval.bootstrap import bootstrap_indices, bootstrap_metrics, percentile_ci  # noqa: E402


def synthetic_table(n: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    prev = np.exp(np.linspace(np.log(0.001), np.log(0.20), k))
    rng.shuffle(prev)
    Y = rng.random((n, k)) < prev[None, :]
    sep = rng.uniform(0.8, 2.8, size=k)  # d' -> AUROC ~0.71..0.98
    S = (rng.normal(size=(n, k)) + sep[None, :] * Y).astype(np.float32).astype(np.float64)
    thr = np.quantile(S, 1 - prev, axis=0)
    return S, Y, thr, prev


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--n-studies", type=int, default=21054)
    ap.add_argument("--n-classes", type=int, default=82)
    ap.add_argument("--n-boot", type=int, default=10_000)
    ap.add_argument("--naive-reps", type=int, default=200)
    ap.add_argument("--naive-classes", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--n-jobs", type=int, default=None)
    a = ap.parse_args(argv)

    S, Y, thr, prev = synthetic_table(a.n_studies, a.n_classes, a.seed)
    n, k = S.shape

    t0 = time.perf_counter()
    res = bootstrap_metrics(
        S, Y, thresholds=thr, n_boot=a.n_boot, seed=a.seed, min_pos=1, chunk=a.chunk, n_jobs=a.n_jobs
    )
    t_vec = time.perf_counter() - t0

    # naive loop on the same resamples: first `naive-reps` replicates, classes spread over prevalence
    cls = np.argsort(prev)[np.linspace(0, k - 1, a.naive_classes).round().astype(int)]
    naive = np.full((a.naive_reps, len(cls)), np.nan)
    t0 = time.perf_counter()
    for r, idx in enumerate(bootstrap_indices(n, a.naive_reps, a.seed)):
        for c, j in enumerate(cls):
            y = Y[idx, j]
            if y.any() and not y.all():
                naive[r, c] = roc_auc_score(y, S[idx, j])
    t_naive_sample = time.perf_counter() - t0
    per_call = t_naive_sample / naive.size
    t_naive_full = per_call * a.n_boot * k
    vec = res.reps["auroc"][: a.naive_reps][:, cls]
    both = np.isfinite(naive) & np.isfinite(vec)
    max_diff = float(np.max(np.abs(naive[both] - vec[both])))
    nan_agree = bool(np.array_equal(np.isnan(naive), np.isnan(vec)))
    lo_n, hi_n = percentile_ci(naive)
    lo_v, hi_v = percentile_ci(vec)
    ci_diff = float(max(np.nanmax(np.abs(lo_n - lo_v)), np.nanmax(np.abs(hi_n - hi_v))))

    lo, hi = res.ci("auroc")
    out = {
        "n_studies": n,
        "n_classes": k,
        "n_boot": a.n_boot,
        "chunk": a.chunk,
        "cpu_count": os.cpu_count(),
        "n_jobs": a.n_jobs,
        "prevalence_min": float(prev.min()),
        "prevalence_max": float(prev.max()),
        "vectorized_full_table_s": t_vec,
        "vectorized_metrics": list(res.reps),
        "naive_sample_replicates": a.naive_reps,
        "naive_sample_classes": int(len(cls)),
        "naive_sample_s": t_naive_sample,
        "naive_per_call_ms": per_call * 1e3,
        "naive_full_table_extrapolated_s": t_naive_full,
        "speedup": t_naive_full / t_vec,
        "sample_max_abs_auroc_diff": max_diff,
        "sample_nan_pattern_equal": nan_agree,
        "sample_max_abs_ci_diff": ci_diff,
        "mean_auroc": float(np.nanmean(res.point["auroc"])),
        "median_auroc_ci_width": float(np.nanmedian(hi - lo)),
        "goal_full_table_le_30s": t_vec <= 30.0,
        "goal_speedup_ge_200": t_naive_full / t_vec >= 200,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    print(f"{'quantity':42s} value")
    for key in (
        "n_studies",
        "n_classes",
        "n_boot",
        "vectorized_full_table_s",
        "naive_per_call_ms",
        "naive_full_table_extrapolated_s",
        "speedup",
        "sample_max_abs_auroc_diff",
        "sample_max_abs_ci_diff",
        "sample_nan_pattern_equal",
        "mean_auroc",
        "median_auroc_ci_width",
        "goal_full_table_le_30s",
        "goal_speedup_ge_200",
    ):
        v = out[key]
        print(f"{key:42s} {v:.4g}" if isinstance(v, float) else f"{key:42s} {v}")
    return out


if __name__ == "__main__":
    main()
