"""The export with freed memory kept in its processes (``synth.keep_freed_memory_mb``) against the C library's defaults.

Each pass is a fresh interpreter that writes the first ``--studies`` studies of the demo cohort (``config.yaml``)
with ``--workers`` forked processes, as the synth rule does: ``default`` leaves glibc and numpy as they are,
``keep`` calls ``neurovfm.utils.allocator.keep_freed_memory`` first. Passes alternate; reported per mode are the
median wall time, CPU time (user and system, the workers included) and minor page faults, and the ratios keep /
default. The script fails unless both modes write byte-identical exports. Positive control: the setting only does
what it claims if the kernel's share (system time) falls; the count of faults need not (with numpy's huge-page
advice off, a fault maps 4 KB instead of 2 MB, and each costs far less).
Usage: python benchmarks/synth_allocator.py OUT.json [--studies 60] [--workers 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, resource, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, {root!r})
from benchmarks.synth_person import _digest
from neurovfm.config import load_config
from neurovfm.synth.export import synth_settings, write_export
from neurovfm.utils.allocator import keep_freed_memory
mode, studies, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cfg = load_config({config!r})
sc = dict(synth_settings(cfg), n_studies=studies)
if mode == "keep":
    keep_freed_memory(int(cfg["synth"]["keep_freed_memory_mb"]))
with tempfile.TemporaryDirectory() as tmp:
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    write_export(Path(tmp), sc, cfg["seed"], workers=workers)
    wall = time.perf_counter() - t0
    r1, rc = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    digest = _digest(Path(tmp))
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime) + rc.ru_utime + rc.ru_stime
sys_s = (r1.ru_stime - r0.ru_stime) + rc.ru_stime
faults = (r1.ru_minflt - r0.ru_minflt) + rc.ru_minflt
print(json.dumps({{"wall_s": wall, "cpu_s": cpu, "sys_s": sys_s, "minor_faults": faults, "digest": digest}}))
"""


def run_pass(mode: str, studies: int, workers: int) -> dict:
    code = CHILD.format(root=str(ROOT), config=str(ROOT / "config.yaml"))
    out = subprocess.run([sys.executable, "-c", code, mode, str(studies), str(workers)], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{mode} pass failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--studies", type=int, default=60)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {"default": [], "keep": []}
    for _ in range(args.repeats):
        for mode in runs:
            runs[mode].append(run_pass(mode, args.studies, args.workers))
            print(mode, {k: v for k, v in runs[mode][-1].items() if k != "digest"}, flush=True)
    if len({r["digest"] for rs in runs.values() for r in rs}) != 1:
        sys.exit("the two modes wrote different exports")
    med = {
        m: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "cpu_s", "sys_s", "minor_faults")}
        for m, rs in runs.items()
    }
    if not med["keep"]["sys_s"] < 0.75 * med["default"]["sys_s"]:
        sys.exit("positive control failed: keeping freed memory did not cut the system time by a quarter")
    result = {
        "studies": args.studies,
        "workers": args.workers,
        "repeats": args.repeats,
        "byte_identical": True,
        "median": {m: {k: round(v, 2) for k, v in d.items()} for m, d in med.items()},
        "ratio_keep_over_default": {k: round(med["keep"][k] / med["default"][k], 3) for k in med["keep"]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
