"""The export's DICOM encoding with the file meta group through the element cache (current) or written by pydicom's
``write_file_meta_info`` for every file (former), in one run and one process.

The datasets are those the export writes for the first ``--patients`` patients of the demo cohort (collected once
from a real export pass); each variant then encodes all of them with one ``ElementCache`` per series, as the
export does, alternating, ``--repeats`` times. Reports milliseconds per file of each (median) and their ratio
(current / former). Both must give the same bytes for every file; the script fails otherwise.

Usage: python benchmarks/dicom_file_meta.py OUT.json [--patients 4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from pydicom.filebase import DicomBytesIO  # noqa: E402
from pydicom.filewriter import write_file_meta_info  # noqa: E402
from synth_person import demo_patients  # noqa: E402

import neurovfm.synth.dicom_writer as dw  # noqa: E402
import neurovfm.synth.export as ex  # noqa: E402


class FormerCache(dw.ElementCache):
    """The element cache as it was before: group 2 written whole by pydicom for every file."""

    def _file_meta(self, meta) -> bytes:
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_file_meta_info(fp, meta, enforce_standard=True)
        return fp.getvalue()


def collect(n_patients: int) -> list[list]:
    """The datasets of an export pass, grouped by the cache they were written through (one per series)."""
    cfg, seed, groups = demo_patients(n_patients)
    runs: dict[int, list] = {}
    original = dw.write_dataset

    def keep(ds, path, cache=None):
        if cache is not None:  # the image series; other objects are written whole by pydicom either way
            runs.setdefault(id(cache), []).append(ds)
        original(ds, path, cache)

    dw.write_dataset = keep
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for group in groups:
                ex.export_patient(group, seed, cfg, tmp)
    finally:
        dw.write_dataset = original
    return list(runs.values())


def encode_all(runs, cls) -> tuple[float, list[bytes]]:
    t0 = time.perf_counter()
    out = []
    for run in runs:
        cache = cls()
        out.extend(cache.encode(ds) for ds in run)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--patients", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    runs = collect(args.patients)
    n = sum(len(r) for r in runs)
    times = {"former": [], "current": []}
    for _ in range(args.repeats):
        for name, cls in (("former", FormerCache), ("current", dw.ElementCache)):
            t, files = encode_all(runs, cls)
            times[name].append(t)
            if name == "former":
                reference = files
            elif files != reference:
                sys.exit("the two encodings differ")
    former, current = (statistics.median(times[k]) / n * 1e3 for k in ("former", "current"))
    result = {
        "patients": args.patients,
        "files": n,
        "series": len(runs),
        "byte_identical": True,
        "former_ms_per_file": round(former, 3),
        "current_ms_per_file": round(current, 3),
        "ratio_current_to_former": round(current / former, 3),
        "repeats": args.repeats,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
