"""The embedded health system's export: one person per patient (current) against one per study (former), in one run.

A patient's studies image the same person: head size and the brain's own anatomy (``synth.phantom.build_person``,
the anatomy variation is about a third of a study's rendering) are drawn once per patient and shared by the
patient's studies (``synth.export.export_patient``). The former code drew them again for every study.

On the first ``--patients`` patients of the demo cohort (``config.yaml``; their studies as the cohort has them, one to
three each), in one process on one thread: ``baseline`` draws the person again for every study, as the former code
did (``export_study(..., person=None)``; here from the patient's stream, so the files are the same), ``current``
once per patient (``export_patient``). The script fails unless both write byte-identical files. Reports seconds per
study of each (median of ``--repeats`` alternating passes), the ratio current / baseline, and how many persons each
drew (the positive control: the baseline draws one per study).
Usage: python benchmarks/synth_person.py OUT.json [--patients 12] [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import neurovfm.synth.export as ex  # noqa: E402
from neurovfm.config import load_config  # noqa: E402


def _groups(plans, n_patients: int) -> list[list]:
    by_patient: dict[int, list] = {}
    for p in plans:
        by_patient.setdefault(p.patient.index, []).append(p)
    return list(by_patient.values())[:n_patients]


def demo_patients(n_patients: int) -> tuple[dict, int, list[list]]:
    """The demo's synth settings, seed and the study plans of its first ``n_patients`` patients (one thread)."""
    torch.set_num_threads(1)
    whole = load_config(ROOT / "config.yaml")
    cfg, seed = ex.synth_settings(whole), int(whole["seed"])
    return cfg, seed, _groups(ex.planned_cohort(cfg, seed), n_patients)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.is_file():
            h.update(f.relative_to(root).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def run_pass(groups, seed: int, cfg: dict, per_patient: bool) -> tuple[float, str, int]:
    """(seconds per study, digest of the files written, persons drawn)."""
    drawn = 0
    person_of = ex.person_of

    def counting(*args, **kwargs):
        nonlocal drawn
        drawn += 1
        return person_of(*args, **kwargs)

    ex.person_of = counting
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            results = []
            for group in groups:
                if per_patient:
                    results += ex.export_patient(group, seed, cfg, tmp)
                else:
                    results += [ex.export_study(plan, seed, cfg, tmp) for plan in group]
            elapsed = time.perf_counter() - t0
            digest = _digest(Path(tmp))
    finally:
        ex.person_of = person_of
    return elapsed / len(results), digest, drawn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--patients", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cfg, seed, groups = demo_patients(args.patients)
    times: dict[str, list[float]] = {"baseline": [], "current": []}
    persons, digests = {}, {}
    for _ in range(args.repeats):
        for name, per_patient in (("baseline", False), ("current", True)):
            t, digest, drawn = run_pass(groups, seed, cfg, per_patient)
            times[name].append(t)
            persons[name], digests[name] = drawn, digest
    if digests["baseline"] != digests["current"]:
        sys.exit("the two passes wrote different files")
    base, cur = statistics.median(times["baseline"]), statistics.median(times["current"])
    result = {
        "patients": len(groups),
        "studies": sum(len(g) for g in groups),
        "persons_drawn": persons,
        "byte_identical": True,
        "baseline_s_per_study": round(base, 3),
        "current_s_per_study": round(cur, 3),
        "ratio_current_over_baseline": round(cur / base, 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
