"""The fast resampling path for maps separable up to the rounding of the header's direction cosines.

``neurovfm.preprocess.resample.separable_plan`` lets a map take the sparse separable path when its cross terms
move no sample by more than ``MAX_SHIFT_VOXELS``; the baseline is the former test, which sent any cross term
above 1e-7 to ``scipy.ndimage.affine_transform`` (``former_plan`` below, as it was before commit 3639fff). On the
series of one split of a demo run (its ingest tables and export), each series is read once, then processed (resample, windows, quantisation, masks) by both settings in
alternating order; reported are the summed processing seconds per setting, their ratio current / baseline, how
many series each setting sent through ``affine_transform``, and how far the stored 8-bit planes differ.
Positive control: the baseline must route series through ``affine_transform`` (else the comparison would time the
same path twice); the script fails otherwise. How many the current test routes there is reported, not required.
Usage: python benchmarks/preprocess_separable.py OUT.json --results results/demo --private private/demo
    [--split val] [--max-series 140]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neurovfm.config import load_config  # noqa: E402
from neurovfm.preprocess import resample as rs  # noqa: E402
from neurovfm.preprocess import run, source  # noqa: E402
from neurovfm.preprocess.volume import process  # noqa: E402

EXACT = rs.separable_plan


def former_plan(matrix: np.ndarray, shape, tol: float = 1e-7):
    """The former test: every cross term at most ``tol``, whatever the output's extent."""
    if abs(matrix[0, 1]) > tol or abs(matrix[0, 2]) > tol:
        return None
    block = matrix[1:, 1:]
    for o in (1, 2):
        if np.sort(np.abs(block[:, o - 1]))[0] > tol:
            return None
    src = [1 + int(np.argmax(np.abs(block[:, o - 1]))) for o in (1, 2)]
    return src if sorted(src) == [1, 2] else None


def _timed(mode: str, array, job, pcfg, counter: list):
    """(seconds, planes) of one series' processing with the current bound or the former exact test."""
    real_affine = rs.ndimage.affine_transform

    def counting(*args, **kwargs):
        counter.append(mode)
        return real_affine(*args, **kwargs)

    rs.separable_plan = EXACT if mode == "current" else former_plan
    rs.ndimage.affine_transform = counting
    try:
        t0 = time.perf_counter()
        res = process(array.copy(), job.affine, job.meta["modality"], job.grid, pcfg, expected_shape=job.shape)
        return time.perf_counter() - t0, res.planes
    finally:
        rs.separable_plan, rs.ndimage.affine_transform = EXACT, real_affine


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--results", default="results/demo")
    ap.add_argument("--private", default="private/demo")
    ap.add_argument("--config", default=str(ROOT / "config.yaml"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--max-series", type=int, default=140)
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    pcfg = cfg["preprocess"]
    res_dir, priv = Path(args.results), Path(args.private)
    files_csv = str(priv / "files.csv")
    export_root = res_dir / "pacs_export" / "dicom"
    _series, jobs, _excluded = run._plan(str(res_dir / "ingest" / "series.csv"), files_csv, pcfg, 1)
    jobs = [j for j in jobs if j.meta["split"] == args.split][: args.max_series]
    seconds = {"current": 0.0, "baseline": 0.0}
    general = []
    differing = total = 0
    max_level = 0
    for n, job in enumerate(jobs):
        rows = source.read_rows(files_csv, *job.files)
        array = source.LOADERS["dicom"](
            [export_root / p for _, p in rows], np.asarray(job.affine).reshape(4, 4), job.shape
        )
        array = np.ascontiguousarray(array, dtype=np.float32)
        order = ("current", "baseline") if n % 2 == 0 else ("baseline", "current")
        planes = {}
        for mode in order:
            dt, planes[mode] = _timed(mode, array, job, pcfg, general)
            seconds[mode] += dt
        for a, b in zip(planes["current"], planes["baseline"]):
            d = np.abs(a.astype(np.int16) - b.astype(np.int16))
            differing += int((d > 0).sum())
            total += d.size
            max_level = max(max_level, int(d.max()))
    through_general = {m: general.count(m) for m in seconds}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit.strip(),
        "split": args.split,
        "series": len(jobs),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "ratio_current_over_baseline": round(seconds["current"] / seconds["baseline"], 3),
        "series_through_affine_transform": through_general,
        "stored_bytes_differing_fraction": differing / max(total, 1),
        "max_byte_difference": max_level,
        "control_baseline_takes_general_path": through_general["baseline"] > 0,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    if not out["control_baseline_takes_general_path"]:
        print("positive control failed: the baseline never took the general path", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
