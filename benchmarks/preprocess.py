"""Preprocessing benchmark on synthetic DICOM series.

Writes N phantom series (CT axial / thin-slice / gantry-tilted, MRI axial / sagittal / coronal / oblique)
as 16-bit DICOM, then measures on the same files (page cache warm for every pass):
  * decode only: ``neurovfm.ingest.volume.load_series_volume`` over every series, one process;
  * full preprocessing: ``run_preprocess`` (decode + resample + windows + masks + shard writes), one process,
    and with ``--workers`` processes; ratio = full / decode (goal <= 2);
  * reader: every train volume read in random order through ``ShardReader`` vs one sequential read of the
    same shard files (goal >= 0.8), plus random access with the 4-bit channels unpacked.
Usage: python benchmarks/preprocess.py OUT.json [--n-series 500] [--workers 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # test-volume factory shared with the tests

from neurovfm.config import load_config  # noqa: E402
from neurovfm.ingest.volume import load_series_volume  # noqa: E402
from volume_factory import Acquisition, volume, write_dicom_series  # noqa: E402
from neurovfm.preprocess.run import run_preprocess  # noqa: E402
from neurovfm.store.reader import ShardReader  # noqa: E402

PROTOCOLS = [  # modality, acquisition (shape = slices, rows, cols)
    ("CT", Acquisition("axial", (36, 256, 256), (0.9, 0.9), 5.0)),
    ("CT", Acquisition("axial", (112, 256, 256), (0.8, 0.8), 1.25)),
    ("CT", Acquisition("axial", (40, 256, 256), (0.9, 0.9), 4.0, tilt_deg=18.0)),
    ("MR", Acquisition("axial", (28, 256, 256), (0.9, 0.9), 5.5)),
    ("MR", Acquisition("sagittal", (26, 256, 256), (1.0, 1.0), 5.0)),
    ("MR", Acquisition("coronal", (30, 256, 256), (0.9, 0.9), 5.0, oblique_deg=12.0)),
    ("MR", Acquisition("axial", (120, 256, 256), (1.0, 1.0), 1.0)),
]


def generate(root: Path, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    series, files = [], []
    for s in range(n):
        modality, acq = PROTOCOLS[s % len(PROTOCOLS)]
        arr, aff = volume(acq, modality, noise=6.0, seed=s)
        sid = f"ser{s:05d}"
        paths = write_dicom_series(root / "dicom" / sid, arr, aff, modality)
        split = "train" if s % 10 < 8 else ("val" if s % 10 == 8 else "test")
        series.append(
            {
                "series_id": sid,
                "study_id": f"study{s // 4:05d}",
                "patient_id": f"pt{s // 8:05d}",
                "modality": modality,
                "sequence": "ct" if modality == "CT" else "t1",
                "orientation": acq.plane,
                "n_slices": acq.shape[0],
                "rows": acq.shape[1],
                "cols": acq.shape[2],
                "split": split,
                "affine_lps": json.dumps(aff.ravel().tolist()),
            }
        )
        files += [
            {"file_id": f"{sid}-{k}", "series_id": sid, "slice_index": k, "path": str(p.relative_to(root))}
            for k, p in enumerate(paths)
        ]
        rng.random()
    pd.DataFrame(series).to_csv(root / "series.csv", index=False)
    pd.DataFrame(files).to_csv(root / "files.csv", index=False)
    return pd.DataFrame(series), pd.DataFrame(files)


def time_decode(root: Path, series: pd.DataFrame, files: pd.DataFrame) -> tuple[float, int]:
    groups = files.groupby("series_id")["path"].apply(list)
    t0, voxels = time.perf_counter(), 0
    for row in series.itertuples():
        arr = load_series_volume([str(root / p) for p in groups[row.series_id]], json.loads(row.affine_lps))
        voxels += arr.size
    return time.perf_counter() - t0, voxels


def _read_sequential(index: Path, shards: list[dict]) -> int:
    total = 0
    for sh in shards:
        with open(index.parent / sh["file"], "rb") as fh:
            while chunk := fh.read(1 << 24):
                total += len(chunk)
    return total


def time_reader(index: Path, seed: int = 0) -> dict:
    """Both passes run on a warm page cache (one untimed sequential pass first), so the comparison is
    of access patterns, not of which pass found the bytes on disk."""
    reader = ShardReader(index)
    n_bytes = sum(v["nbytes"] for v in reader.volumes)
    _read_sequential(index, reader.index["shards"])
    t0 = time.perf_counter()
    total = _read_sequential(index, reader.index["shards"])
    t_seq = time.perf_counter() - t0
    order = np.random.default_rng(seed).permutation(len(reader))
    t0 = time.perf_counter()
    for i in order:
        np.array(reader.record(int(i)))  # forces the bytes to be read, as a training step would
    t_rand = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in order:
        for name in reader.channels(int(i)):
            reader.channel(int(i), name).sum(dtype=np.uint64)
    t_unpack = time.perf_counter() - t0
    return {
        "bytes_records": n_bytes,
        "bytes_shards": total,
        "sequential_GBps": total / t_seq / 1e9,
        "random_GBps": n_bytes / t_rand / 1e9,
        "random_unpacked_GBps": n_bytes / t_unpack / 1e9,
        "random_vs_sequential": (n_bytes / t_rand) / (total / t_seq),
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_json")
    ap.add_argument("--n-series", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="neurovfm-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = load_config(ROOT / "config.yaml")
    t0 = time.perf_counter()
    series, files = generate(work / "export", args.n_series)
    t_gen = time.perf_counter() - t0
    t_dec, voxels = time_decode(work / "export", series, files)
    res = {
        "n_series": len(series),
        "n_files": len(files),
        "input_voxels": voxels,
        "generate_s": t_gen,
        "decode_s": t_dec,
    }
    for workers in sorted({1, args.workers}):
        out = work / f"shards_w{workers}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        summary = run_preprocess(
            work / "export" / "series.csv",
            work / "export" / "files.csv",
            work / "export",
            out,
            cfg,
            workers=workers,
            kind="dicom",
        )
        res[f"preprocess_w{workers}_s"] = time.perf_counter() - t0
        res[f"series_per_s_w{workers}"] = len(series) / res[f"preprocess_w{workers}_s"]
        res["summary"] = summary
    res["ratio_full_over_decode_w1"] = res["preprocess_w1_s"] / t_dec
    res["reader"] = time_reader(work / "shards_w1" / "train" / "index.json")
    rows = [
        ("series", res["n_series"], ""),
        ("files (slices)", res["n_files"], ""),
        ("decode only, 1 process", f"{t_dec:.1f} s", f"{len(series) / t_dec:.1f} series/s"),
        ("full preprocessing, 1 process", f"{res['preprocess_w1_s']:.1f} s", f"{res['series_per_s_w1']:.1f} series/s"),
        (
            f"full preprocessing, {args.workers} processes",
            f"{res[f'preprocess_w{args.workers}_s']:.1f} s",
            f"{res[f'series_per_s_w{args.workers}']:.1f} series/s",
        ),
        ("full / decode (goal <= 2)", f"{res['ratio_full_over_decode_w1']:.2f}", ""),
        ("reader sequential", f"{res['reader']['sequential_GBps']:.2f} GB/s", ""),
        ("reader random (records)", f"{res['reader']['random_GBps']:.2f} GB/s", ""),
        ("reader random, 4-bit unpacked", f"{res['reader']['random_unpacked_GBps']:.2f} GB/s", ""),
        ("random / sequential (goal >= 0.8)", f"{res['reader']['random_vs_sequential']:.2f}", ""),
    ]
    for name, a, b in rows:
        print(f"{name:40s} {a!s:>14s} {b}")
    Path(args.out_json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out_json).write_text(json.dumps(res, indent=1, default=float) + "\n")
    return res


if __name__ == "__main__":
    main()
