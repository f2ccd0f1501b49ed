"""Synthetic export benchmark: the demo's studies written with today's writer and with the former code paths.

In one run and one process (one thread), on the same studies of the demo configuration (``config.yaml``):
  * ``baseline``: every DICOM file encoded whole by pydicom (``Dataset.save_as``) and each sequence's intensity
    volume summed over the tissue maps in whole-volume passes (the code before the element cache and the slab sum);
  * ``current``: the package as it is (``dicom_writer.ElementCache``, ``phantom._weighted_maps`` by slabs).
Both exports must be byte-identical (the speed-up changes no file); the script fails otherwise. Reports seconds
per study of each and their ratio (current / baseline; alternating passes, median over ``--repeats``).
Usage: python benchmarks/synth_export.py OUT.json [--studies 12] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import neurovfm.synth.dicom_writer as dw  # noqa: E402
import neurovfm.synth.phantom as ph  # noqa: E402
from neurovfm.config import load_config  # noqa: E402
from neurovfm.synth.export import export_study, planned_cohort, synth_settings  # noqa: E402


def _whole_volume_sum(frac, weights):
    """The former tissue-map sum of ``phantom._volume``: one whole-volume multiply and add per map."""
    vol = np.zeros(frac.shape[1:], np.float32)
    tmp = np.empty_like(vol)
    for c, w in enumerate(weights):
        np.multiply(frac[c], w, out=tmp, dtype=np.float32)
        vol += tmp
    return vol


class _NoCache:
    """Stands in for ``ElementCache`` so that ``write_dataset`` takes pydicom's whole-file path."""

    def __new__(cls):
        return None


@contextlib.contextmanager
def _baseline():
    saved = ph._weighted_maps, dw.ElementCache
    ph._weighted_maps, dw.ElementCache = _whole_volume_sum, _NoCache
    try:
        yield
    finally:
        ph._weighted_maps, dw.ElementCache = saved


def _export(plans, seed, cfg, root: Path) -> tuple[float, dict]:
    (root / "dicom").mkdir(parents=True)
    t = time.perf_counter()
    for plan in plans:
        export_study(plan, seed, cfg, str(root))
    sec = time.perf_counter() - t
    digest = {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }
    return sec, digest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--studies", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    cfg = load_config(ROOT / "config.yaml")
    seed = int(cfg["seed"])
    scfg = synth_settings(cfg)
    plans = planned_cohort(scfg, seed)[: args.studies]
    ph.load_anatomy()
    times = {"baseline": [], "current": []}
    digests = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name in ("baseline", "current") if r % 2 == 0 else ("current", "baseline"):
                with _baseline() if name == "baseline" else contextlib.nullcontext():
                    sec, digests[name] = _export(plans, seed, scfg, Path(tmp) / f"{name}{r}")
                times[name].append(sec / len(plans))
                print(f"pass {r} {name}: {times[name][-1]:.3f} s/study", flush=True)
    identical = digests["baseline"] == digests["current"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit.strip(),
        "studies": len(plans),
        "files": len(digests["current"]),
        "repeats": args.repeats,
        "baseline_s_per_study": statistics.median(times["baseline"]),
        "current_s_per_study": statistics.median(times["current"]),
        "ratio_current_over_baseline": statistics.median(times["current"]) / statistics.median(times["baseline"]),
        "byte_identical": identical,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    if not identical:
        raise SystemExit("the two exports differ: the faster paths changed a file")


if __name__ == "__main__":
    main()
