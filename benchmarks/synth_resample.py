"""The embedded health system's export with the compiled sampling kernels (current) against the former torch path.

``neurovfm.synth.resample`` replaced two uses of ``torch.nn.functional.grid_sample`` in the export: the warps of a
patient's tissue maps (``lesions.Canvas.warp``) and the renderer's sampling of each series (``phantom.render``).
On the first ``--patients`` patients of the demo cohort (``config.yaml``), in one process on one thread, alternating
passes: ``baseline`` puts the former array code back (``synth.resample_reference``: float32 grids, grid_sample,
masked write-backs), ``current`` is the package as it is. The script fails unless both write byte-identical files.
Positive control: a pass whose former code forms the sampling points in float64 must write different files (the
digest comparison sees last-bit changes). Reports seconds per study (median of ``--repeats``) and the ratio
current / baseline. Usage: python benchmarks/synth_resample.py OUT.json [--patients 12] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import neurovfm.synth.export as ex  # noqa: E402
import neurovfm.synth.phantom as ph  # noqa: E402
from benchmarks.synth_person import _digest, demo_patients  # noqa: E402
from neurovfm.synth.anatomy import BRAIN_CHANNELS  # noqa: E402
from neurovfm.synth.lesions import Canvas  # noqa: E402
from neurovfm.synth.resample_reference import render_grid_torch, warp_torch  # noqa: E402


@contextlib.contextmanager
def former_sampling(grid_dtype=np.float32):
    """The export with the former torch path (``grid_dtype`` float64: the positive control's variant of it)."""
    warp, render_grid = Canvas.warp, ph.render_grid

    def warp_former(self, box, u, channels=BRAIN_CHANNELS, with_vent=True, tol_mm=0.05):
        warp_torch(self, box, u, channels, with_vent, tol_mm, grid_dtype=grid_dtype)

    Canvas.warp = warp_former
    ph.render_grid = lambda vol, coef, n, rows, cols, out: render_grid_torch(vol, coef, n, rows, cols, out, grid_dtype)
    try:
        yield
    finally:
        Canvas.warp, ph.render_grid = warp, render_grid


def run_pass(groups, seed: int, cfg: dict) -> tuple[float, str]:
    """(seconds per study, digest of the files written)."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        n = sum(len(ex.export_patient(group, seed, cfg, tmp)) for group in groups)
        elapsed = time.perf_counter() - t0
        return elapsed / n, _digest(Path(tmp))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--patients", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cfg, seed, groups = demo_patients(args.patients)
    run_pass(groups[:1], seed, cfg)  # warm-up: the anatomy, and the kernels compiled (or loaded from numba's cache)
    times: dict[str, list[float]] = {"baseline": [], "current": []}
    digests = {}
    for _ in range(args.repeats):
        with former_sampling():
            times["baseline"].append((r := run_pass(groups, seed, cfg))[0])
            digests["baseline"] = r[1]
        times["current"].append((r := run_pass(groups, seed, cfg))[0])
        digests["current"] = r[1]
    with former_sampling(np.float64):
        control = run_pass(groups, seed, cfg)[1]
    if digests["baseline"] != digests["current"]:
        sys.exit("the compiled kernels wrote different files than the former torch path")
    if control == digests["baseline"]:
        sys.exit("positive control failed: sampling points formed in float64 wrote the same files")
    base, cur = statistics.median(times["baseline"]), statistics.median(times["current"])
    result = {
        "patients": len(groups),
        "studies": sum(len(g) for g in groups),
        "byte_identical": True,
        "positive_control_differs": True,
        "baseline_s_per_study": round(base, 3),
        "current_s_per_study": round(cur, 3),
        "ratio_current_over_baseline": round(cur / base, 3),
        "times": {k: [round(t, 3) for t in v] for k, v in times.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
