"""Preprocess every included series of ``series.csv`` into per-split memory-mapped shards.

Flow: plan every series from its header geometry alone (output grid and record size; geometric
exclusions), assign studies to shards (greedy on bytes, a study never spans two shards), then per shard:
skip it if already finished, else allocate the temporary file and let a process pool load, process and
write each series straight into its byte range (only small metadata returns to the parent, so memory
depends on the worker count, not on the export), commit, write the sidecar. Finally the exclusion
ledger, train statistics and one ``index.json`` per split (written last).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from neurovfm.preprocess import source
from neurovfm.preprocess.orient import Grid
from neurovfm.preprocess.volume import PreprocessError, channel_layout, n_planes, plan, process
from neurovfm.store import index as idx
from neurovfm.store import writer
from neurovfm.store.stats import compute_stats, write_stats
from neurovfm.utils.atomic import write_csv, write_text
from neurovfm.utils.failure import Failure, IncompleteParts, check, describe, is_transient, keep_raw
from neurovfm.utils.progress import Progress

log = logging.getLogger("neurovfm")

SPLITS = ("train", "val", "test")
LEDGER_COLUMNS = ["unit", "file_id", "series_id", "study_id", "n_files", "reason", "detail", "stage"]
META_COLUMNS = ("series_id", "study_id", "patient_id", "modality", "sequence", "orientation", "split")


class ShardsIncomplete(IncompleteParts):
    """The merge of the sharded preprocessing found a shard missing, extra or out of date."""


@dataclass
class Job:
    meta: dict  # META_COLUMNS of series.csv
    affine: list  # 16 floats
    shape: tuple  # (n_slices, rows, cols)
    files: tuple  # (byte offset into files.csv, n rows)
    grid: Grid
    nbytes: int
    shard: int = -1
    offset: int = -1


def exclusion(meta: dict, n_files: int, reason: str, detail: str, file_id: str = "") -> dict:
    return {
        "unit": "series",
        "file_id": file_id,
        "series_id": meta["series_id"],
        "study_id": meta["study_id"],
        "n_files": int(n_files),
        "reason": check(reason),
        "detail": detail,
        "stage": "preprocess",
    }


def plan_jobs(series: pd.DataFrame, files: dict, pcfg: dict) -> tuple[list[Job], list[dict]]:
    jobs, excluded = [], []
    for row in series.to_dict("records"):
        meta = {k: ("" if pd.isna(row.get(k)) else row.get(k)) for k in META_COLUMNS}
        shape = (int(row["n_slices"]), int(row["rows"]), int(row["cols"]))
        where = files.get(meta["series_id"])
        n_files = where[1] if where else 0
        if meta["split"] not in SPLITS:
            excluded.append(exclusion(meta, n_files, "unknown_split", f"split {meta['split']!r}"))
            continue
        if where is None:
            excluded.append(exclusion(meta, 0, "missing_files", "no rows in files.csv"))
            continue
        if meta["modality"] not in ("CT", "MR"):
            excluded.append(exclusion(meta, n_files, "unknown_modality", f"modality {meta['modality']!r}"))
            continue
        try:
            affine = [float(v) for v in json.loads(row["affine_lps"])]
            if len(affine) != 16:
                raise PreprocessError("bad_affine", f"{len(affine)} values instead of 16")
            grid = plan(affine, shape, pcfg)
        except (PreprocessError, json.JSONDecodeError, TypeError, ValueError) as err:
            reason = err.reason if isinstance(err, PreprocessError) else "bad_affine"
            detail = (
                err.detail if isinstance(err, PreprocessError) else f"affine_lps cannot be read ({type(err).__name__})"
            )
            excluded.append(exclusion(meta, n_files, reason, detail))
            continue
        planes = n_planes(channel_layout(meta["modality"], pcfg))
        jobs.append(Job(meta, affine, shape, where, grid, idx.record_nbytes(grid.shape, pcfg["patch"], planes)))
    return jobs, excluded


def assign_shards(jobs: list[Job], n_shards: int) -> list[list[Job]]:
    """Greedy by bytes over studies (largest first, ties by id); records ordered by study, series."""
    n = max(1, min(int(n_shards), len(jobs)))
    studies: dict[str, list[Job]] = {}
    for j in jobs:
        studies.setdefault(j.meta["study_id"], []).append(j)
    load = [0] * n
    shards: list[list[Job]] = [[] for _ in range(n)]
    sized = sorted(studies.items(), key=lambda kv: (-sum(j.nbytes for j in kv[1]), kv[0]))
    for _, group in sized:
        s = min(range(n), key=lambda i: (load[i], i))
        shards[s].extend(group)
        load[s] += sum(idx.aligned(j.nbytes) for j in group)
    for s, group in enumerate(shards):
        group.sort(key=lambda j: (j.meta["study_id"], j.meta["series_id"]))
        offset = 0
        for j in group:
            j.shard, j.offset = s, offset
            offset += idx.aligned(j.nbytes)
    return [g for g in shards if g]


def shard_size(group: list[Job]) -> int:
    last = group[-1]
    return last.offset + last.nbytes


def _entry(job: Job, res, pcfg: dict) -> dict:
    g = job.grid
    return {
        **job.meta,
        "shard": job.shard,
        "offset": job.offset,
        "nbytes": job.nbytes,
        "shape": list(g.shape),
        "mask": {
            "offset": idx.mask_offset(g.shape, len(res.planes)),
            "shape": list(res.token_mask.shape),
            "n_foreground": int(res.token_mask.sum()),
        },
        "direction_lps": np.round(g.direction, 6).tolist(),
        "origin_lps": np.round(g.origin, 4).tolist(),
        "fit": {"mode": g.fit, "full_shape": list(g.full_shape), "margin_vox": list(g.margin)},
        "obliquity_deg": round(g.obliquity_deg, 3),
        "intensity": {k: round(v, 4) for k, v in res.intensity.items()},
        "moments": res.moments,
    }


def _load_failure(err: BaseException, rows: list[tuple[str, str]], export_root: str) -> tuple[Failure, str]:
    """(reason code and PHI-free detail, file_id of the file at fault or "") of a failed pixel load."""
    from neurovfm.ingest.volume import VolumeError

    if isinstance(err, (VolumeError, OSError)):
        failure = describe(err)
    else:
        failure = Failure("unreadable_pixels", f"pixel data could not be loaded ({type(err).__name__})", False)
    file_id = ""
    name = getattr(err, "filename", None)
    if name is not None:
        by_path = {str(Path(export_root) / p): fid for fid, p in rows}
        file_id = by_path.get(str(name), "")
    slice_k = getattr(err, "detail", "").split(":")[0] if isinstance(err, VolumeError) else ""
    if not file_id and slice_k.startswith("slice "):
        k = int(slice_k.split()[1])
        file_id = rows[k][0] if 0 <= k < len(rows) else ""
    return failure, file_id


def process_job(
    job: Job, files_csv: str, export_root: str, loader, pcfg: dict, shard_tmp: str, private_dir: str | None = None
) -> dict:
    """Worker: load, process, write into the shard. Returns {"entry": ...} or {"exclusion": ...}. A failed
    load is described by a reason code and PHI-free detail (:func:`neurovfm.utils.failure.describe`); the
    raw message goes to ``private_dir/errors/preprocess.log``."""
    rows = source.read_rows(files_csv, *job.files)
    paths = [Path(export_root) / p for _, p in rows]
    from neurovfm.ingest.volume import VolumeError

    try:
        array = loader(paths, np.asarray(job.affine).reshape(4, 4), job.shape)
    except (VolumeError, OSError, ValueError) as err:  # the data or the file system; anything else is a bug
        failure, file_id = _load_failure(err, rows, export_root)
        keep_raw(private_dir, "preprocess", err, subject=f"series {job.meta['series_id']}")
        out = exclusion(job.meta, job.files[1], failure.reason, failure.detail, file_id)
        return {"exclusion": {**out, "stamp": source.stamp(paths)}}
    try:
        res = process(
            np.ascontiguousarray(array, dtype=np.float32),
            job.affine,
            job.meta["modality"],
            job.grid,
            pcfg,
            expected_shape=job.shape,
        )
    except PreprocessError as err:
        out = exclusion(job.meta, job.files[1], err.reason, err.detail)
        return {"exclusion": {**out, "stamp": source.stamp(paths)}}
    del array
    writer.write_record(shard_tmp, job.offset, res.planes, res.token_mask)
    return {"entry": _entry(job, res, pcfg)}


def to_retry(done: dict, group: list[Job], files_csv: str, export_root: str) -> list[Job]:
    """Jobs of a finished shard to process again: excluded for a transient reason (the file system: missing,
    permission, I/O, disk full), or for bad data whose files changed since (restored, re-exported)."""
    by_series = {j.meta["series_id"]: j for j in group}
    out = []
    for ex in done["exclusions"]:
        job = by_series.get(ex["series_id"])
        if job is None:
            continue
        if is_transient(ex["reason"]):
            out.append(job)
            continue
        paths = [Path(export_root) / p for p in source.read_paths(files_csv, *job.files)]
        if ex.get("stamp") is not None and ex["stamp"] != source.stamp(paths):
            out.append(job)
    return sorted(out, key=lambda j: j.offset)


def _shard_fingerprint(split: str, group: list[Job], pcfg: dict, kind: str) -> str:
    return idx.fingerprint(
        {
            "format": idx.FORMAT,
            "version": idx.VERSION,
            "split": split,
            "kind": kind,
            "preprocess": {k: v for k, v in pcfg.items() if k != "workers"},
            "records": [[j.meta, j.affine, j.files[1], j.offset, j.nbytes] for j in group],
        }
    )


class _Pool:
    """Run tasks inline (one worker) or in a process pool with a bounded number in flight."""

    def __init__(self, workers: int):
        self.workers = workers
        self.ex = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) if workers > 1 else None

    def map(self, fn, items, *args):
        if self.ex is None:
            for it in items:
                yield fn(it, *args)
            return
        pending, it = set(), iter(items)
        for item in it:
            pending.add(self.ex.submit(fn, item, *args))
            if len(pending) >= 2 * self.workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in done)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (f.result() for f in done)

    def close(self):
        if self.ex is not None:
            self.ex.shutdown()


def write_split(
    split: str,
    jobs: list[Job],
    out_dir: Path,
    n_shards: int,
    pool: _Pool,
    files_csv: str,
    export_root: str,
    loader,
    pcfg: dict,
    kind: str,
    progress: Progress,
    private_dir: str | None = None,
    only: int | None = None,
    finished_only: bool = False,
) -> tuple[list, list, list]:
    """Write (or reuse) the split's shards; returns (shard infos, entries, exclusions). ``only``: write just
    that shard (one job of the sharded workflow). ``finished_only``: write nothing, refuse an unfinished shard
    (the merge of the sharded workflow)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shards_info, entries, excluded = [], [], []
    for s, group in enumerate(assign_shards(jobs, n_shards) if jobs else []):
        if only is not None and s != only:
            continue
        final, sidecar = out_dir / idx.shard_file(s), out_dir / idx.sidecar_file(s)
        fp = _shard_fingerprint(split, group, pcfg, kind)
        done = writer.finished(final, sidecar, fp)
        if finished_only:
            if done is None:
                raise ShardsIncomplete(
                    f"preprocess merge: shard {split}/{s} is missing or out of date (rerun its preprocess_shard job)"
                )
            retry = []
        else:
            retry = to_retry(done, group, files_csv, export_root) if done is not None else []
        if done is None or retry:
            tmp = writer.temp_path(final)
            if done is None:
                todo, kept = group, {"volumes": [], "exclusions": []}
                writer.allocate(tmp, shard_size(group))
            else:  # only the retried records are written; the others stay as they are in the shard
                todo, again = retry, {j.meta["series_id"] for j in retry}
                kept = {
                    "volumes": done["volumes"],
                    "exclusions": [e for e in done["exclusions"] if e["series_id"] not in again],
                }
                log.info(
                    "%s %s: retrying %d excluded series (%s)",
                    split,
                    final.name,
                    len(retry),
                    ", ".join(sorted({e["reason"] for e in done["exclusions"] if e["series_id"] in again})),
                )
                os.replace(final, tmp)  # a kill from here on leaves no shard: the rerun redoes it whole
                progress.update(len(group) - len(retry))
            found, lost = list(kept["volumes"]), list(kept["exclusions"])
            for out in pool.map(process_job, todo, files_csv, export_root, loader, pcfg, str(tmp), private_dir):
                (found if "entry" in out else lost).append(out.get("entry") or out.get("exclusion"))
                progress.update()
            found.sort(key=lambda e: e["offset"])
            writer.commit(tmp, final)
            done = {
                "fingerprint": fp,
                "file": final.name,
                "nbytes": shard_size(group),
                "volumes": found,
                "exclusions": sorted(lost, key=lambda e: e["series_id"]),
            }
            writer.write_sidecar(sidecar, done)
        else:
            log.info("%s %s already finished (%d volumes), skipped", split, final.name, len(done["volumes"]))
            progress.update(len(group))
        shards_info.append(
            {"file": final.name, "nbytes": done["nbytes"], "n_volumes": len(done["volumes"]), "fingerprint": fp}
        )
        entries += done["volumes"]
        excluded += done["exclusions"]
    if only is None:
        _remove_stale(out_dir, len(shards_info))
    return shards_info, entries, excluded


def _remove_stale(out_dir: Path, n_shards: int) -> None:
    """Shards of an earlier run with more shards than this one (never named by the new index)."""
    for path in sorted(out_dir.glob("shard-*.*")):
        stem = path.name.split(".")[0]
        if path.suffix in (".bin", ".json") and int(stem.split("-")[1]) >= n_shards:
            log.info("removing stale %s", path)
            path.unlink()


def _layouts(pcfg: dict) -> dict:
    out = {}
    for m in ("CT", "MR"):
        chans = channel_layout(m, pcfg)
        out[m] = {"planes": n_planes(chans), "channels": [c.as_dict() for c in chans]}
    return out


def run_preprocess(
    series_csv,
    files_csv,
    export_root,
    out_dir,
    cfg: dict,
    workers: int = 1,
    kind: str = "dicom",
    loader=None,
    private_dir=None,
    parts: list | None = None,
    index_splits=SPLITS,
    ledger: bool = True,
) -> dict:
    """Write ``out_dir/{split}/index.json`` (+ shards), ``out_dir/train/stats.json``,
    ``out_dir/exclusions.csv`` and ``out_dir/summary.json``. ``loader(paths, affine, shape)`` overrides
    the ingest loader of ``kind`` (tests, benchmarks). Raw error messages go to
    ``private_dir/errors/preprocess.log`` (default: the folder of ``files_csv``, i.e. ``private/{run}``).
    ``parts``: the part files of :func:`run_preprocess_shard`, one per split and shard of ``store.shards``;
    then every shard must already be finished (nothing is processed, an unfinished shard is an error)
    and the outputs are byte-identical to a run without ``parts``. ``index_splits``: the splits whose indexes
    this call writes (the train split's statistics with train's), ``ledger``: whether it writes the ledger and
    summary (which read every split): the workflow merges the train split first, so that pretraining starts while
    the other splits are written, then the rest (``index_splits`` val and test; train read, not rewritten)."""
    pcfg, n_shards = cfg["preprocess"], cfg["store"]["shards"]
    index_splits = tuple(index_splits)
    if not index_splits or not set(index_splits) <= set(SPLITS):
        raise ValueError(f"index_splits must name some of {SPLITS}, got {list(index_splits)}")
    needed = SPLITS if ledger else tuple(s for s in SPLITS if s in index_splits)  # in SPLITS order, as always
    private_dir = str(private_dir if private_dir is not None else Path(files_csv).parent)
    out_dir = Path(out_dir)
    for split in index_splits:  # an interrupted rerun must never leave an index describing replaced shards
        (out_dir / split / idx.INDEX_NAME).unlink(missing_ok=True)
    series, jobs, excluded = _plan(series_csv, files_csv, pcfg, workers)
    if parts is not None:
        check_parts(parts, jobs, cfg, kind, splits=needed)
    loader = loader or source.LOADERS[kind]
    progress = Progress(sum(j.meta["split"] in needed for j in jobs), "preprocess", log, unit="series")
    pool = _Pool(max(1, int(workers)))
    results = {}
    try:
        for split in needed:
            split_jobs = [j for j in jobs if j.meta["split"] == split]
            results[split] = write_split(
                split,
                split_jobs,
                out_dir / split,
                n_shards[split],
                pool,
                str(files_csv),
                str(export_root),
                loader,
                pcfg,
                kind,
                progress,
                private_dir,
                finished_only=parts is not None,
            )
    finally:
        pool.close()
    progress.close()
    if "train" in index_splits:
        write_stats(out_dir / "train" / "stats.json", compute_stats(results["train"][1], "train"))
    summary = _write_ledger(out_dir, series, excluded, results) if ledger else {"splits": {}}
    for split in index_splits:  # last: an index exists only once everything it names is in place
        shards_info, entries, _ = results[split]
        idx.write_index(
            out_dir / split / idx.INDEX_NAME,
            {
                "format": idx.FORMAT,
                "version": idx.VERSION,
                "split": split,
                "axis_order": idx.AXIS_ORDER,
                "spacing_mm": [float(s) for s in pcfg["spacing_mm"]],
                "patch": [int(p) for p in pcfg["patch"]],
                "align": idx.ALIGN,
                "layouts": _layouts(pcfg),
                "shards": shards_info,
                "volumes": entries,
            },
        )
    log.info(
        "preprocess: %d volumes written (%s)",
        sum(len(results[s][1]) for s in index_splits),
        ", ".join(index_splits),
    )
    return summary


def _write_ledger(out_dir: Path, series: pd.DataFrame, excluded: list, results: dict) -> dict:
    """The exclusion ledger and summary.json of every split (``results``: split -> write_split's result);
    refuses a run whose series do not add up (written + excluded = planned)."""
    for split in SPLITS:
        excluded += results[split][2]
    ledger = pd.DataFrame(sorted(excluded, key=lambda e: (e["series_id"], e["reason"])), columns=LEDGER_COLUMNS)
    write_csv(out_dir / "exclusions.csv", ledger)
    transient = int(ledger["reason"].map(is_transient).sum()) if len(ledger) else 0
    if transient:
        log.warning(
            "preprocess: %d series excluded for transient reasons (file system); fix the cause and rerun "
            "preprocessing to retry them (docs/troubleshooting.md)",
            transient,
        )
    summary = {
        "n_series_in": int(len(series)),
        "n_excluded": int(len(ledger)),
        "n_excluded_transient": transient,
        "excluded_by_reason": {str(k): int(v) for k, v in ledger["reason"].value_counts().sort_index().items()},
        "splits": {},
    }
    for split in SPLITS:
        shards_info, entries, _ = results[split]
        summary["splits"][split] = {
            "volumes": len(entries),
            "shards": len(shards_info),
            "bytes": int(sum(s["nbytes"] for s in shards_info)),
            "tokens": int(sum(int(np.prod(e["mask"]["shape"])) for e in entries)),
            "foreground_tokens": int(sum(e["mask"]["n_foreground"] for e in entries)),
            "by_modality": {m: sum(e["modality"] == m for e in entries) for m in ("CT", "MR")},
        }
    n_out = sum(s["volumes"] for s in summary["splits"].values())
    if n_out + len(ledger) != len(series):
        raise RuntimeError(f"accounting error: {len(series)} series in, {n_out} written + {len(ledger)} excluded")
    write_text(out_dir / "summary.json", json.dumps(summary, indent=1) + "\n")
    log.info("preprocess: %d volumes written in all, %d excluded", n_out, len(ledger))
    return summary


PLAN_BLOCK = 20_000  # series per planning task when a job plans with several workers


def _plan_block(args) -> tuple[list[Job], list[dict]]:
    block, files, pcfg = args
    return plan_jobs(block, files, pcfg)


def plan_parallel(series: pd.DataFrame, files: dict, pcfg: dict, workers: int = 1, block: int = PLAN_BLOCK):
    """:func:`plan_jobs` over blocks of ``block`` series on ``workers`` processes (the same jobs and exclusions,
    in the same order): every shard job plans every series, 5.24 million at paper scale (docs/scale.md)."""
    if workers <= 1 or len(series) <= block:
        return plan_jobs(series, files, pcfg)
    tasks = []
    for start in range(0, len(series), block):
        part = series.iloc[start : start + block]
        tasks.append((part, {sid: files[sid] for sid in part["series_id"] if sid in files}, pcfg))
    jobs, excluded = [], []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as ex:
        for j, e in ex.map(_plan_block, tasks):
            jobs += j
            excluded += e
    return jobs, excluded


def _plan(series_csv, files_csv, pcfg: dict, workers: int = 1):
    series = pd.read_csv(series_csv, dtype={"series_id": str, "study_id": str, "patient_id": str})
    files = source.index_files_csv(files_csv)
    jobs, excluded = plan_parallel(series, files, pcfg, max(1, int(workers)))
    log.info("preprocess: %d series planned, %d excluded from geometry, %d workers", len(jobs), len(excluded), workers)
    return series, jobs, excluded


PART_FORMAT = "neurovfm-shard-part"


def part_record(split: str, shard: int, group: list[Job] | None, pcfg: dict, kind: str) -> dict:
    """What a finished shard job records (no PHI): the shard's file and fingerprint, or ``file: null`` when
    the split has fewer shards than ``store.shards`` asks for (fewer studies than shards)."""
    rec = {"format": PART_FORMAT, "version": idx.VERSION, "split": split, "shard": int(shard), "file": None}
    if group:
        rec.update(
            file=idx.shard_file(shard),
            fingerprint=_shard_fingerprint(split, group, pcfg, kind),
            n_records=len(group),
        )
    return rec


def run_preprocess_shard(
    series_csv,
    files_csv,
    export_root,
    out_dir,
    cfg: dict,
    split: str,
    shard: int,
    part_path,
    workers: int = 1,
    kind: str = "dicom",
    loader=None,
    private_dir=None,
) -> dict:
    """One shard of one split (a SLURM job of its own): plan every series exactly as :func:`run_preprocess`
    does, write shard ``shard`` of ``split`` (reusing it when finished, retrying transient exclusions), then
    the part file ``part_path`` that the merge (:func:`run_preprocess` with ``parts``) checks."""
    pcfg = cfg["preprocess"]
    n_shards = int(cfg["store"]["shards"][split])
    if split not in SPLITS or not 0 <= int(shard) < n_shards:
        raise ValueError(f"shard {split}/{shard} is not one of store.shards ({split}: {n_shards})")
    private_dir = str(private_dir if private_dir is not None else Path(files_csv).parent)
    out_dir = Path(out_dir)
    (out_dir / split / idx.INDEX_NAME).unlink(missing_ok=True)
    _series, jobs, _excluded = _plan(series_csv, files_csv, pcfg, workers)
    split_jobs = [j for j in jobs if j.meta["split"] == split]
    groups = assign_shards(split_jobs, n_shards) if split_jobs else []
    group = groups[shard] if shard < len(groups) else None
    if group is not None:
        progress = Progress(len(group), f"preprocess {split}/{shard}", log, unit="series")
        pool = _Pool(max(1, int(workers)))
        try:
            write_split(
                split,
                split_jobs,
                out_dir / split,
                n_shards,
                pool,
                str(files_csv),
                str(export_root),
                loader or source.LOADERS[kind],
                pcfg,
                kind,
                progress,
                private_dir,
                only=int(shard),
            )
        finally:
            pool.close()
        progress.close()
    else:
        log.info("preprocess %s/%d: the split has %d shards only, nothing to write", split, shard, len(groups))
    part = part_record(split, shard, group, pcfg, kind)
    write_text(part_path, json.dumps(part, indent=1) + "\n")
    return part


def check_parts(parts: list, jobs: list[Job], cfg: dict, kind: str, splits=SPLITS) -> None:
    """Refuse (one line) part files that are not exactly one per split (of ``splits``) and shard of
    ``store.shards``, or that describe another plan than this one (series.csv or the settings changed since)."""
    pcfg, n_shards = cfg["preprocess"], cfg["store"]["shards"]
    want = {(split, s) for split in splits for s in range(int(n_shards[split]))}
    got: dict[tuple[str, int], dict] = {}
    for path in parts:
        try:
            rec = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ShardsIncomplete(f"preprocess merge: part {Path(path).name} cannot be read ({type(err).__name__})")
        if not isinstance(rec, dict) or rec.get("format") != PART_FORMAT:
            raise ShardsIncomplete(f"preprocess merge: {Path(path).name} is not a {PART_FORMAT} file")
        key = (rec.get("split"), rec.get("shard"))
        if key not in want:
            raise ShardsIncomplete(
                f"preprocess merge: extra part {Path(path).name} (shard {key[0]}/{key[1]} is not in store.shards)"
            )
        if key in got:
            raise ShardsIncomplete(f"preprocess merge: shard {key[0]}/{key[1]} given twice")
        got[key] = rec
    missing = sorted(want - set(got))
    if missing:
        names = ", ".join(f"{a}/{b}" for a, b in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ShardsIncomplete(f"preprocess merge: {len(missing)} shard parts missing ({names})")
    for split in splits:
        split_jobs = [j for j in jobs if j.meta["split"] == split]
        groups = assign_shards(split_jobs, int(n_shards[split])) if split_jobs else []
        for s in range(int(n_shards[split])):
            expected = part_record(split, s, groups[s] if s < len(groups) else None, pcfg, kind)
            if got[(split, s)] != expected:
                raise ShardsIncomplete(
                    f"preprocess merge: part {split}/{s} is out of date (the plan changed); rerun its preprocess_shard job"
                )
