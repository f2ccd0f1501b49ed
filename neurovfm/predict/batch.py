"""The prediction loop: inputs one after another, studies one at a time (streaming: each study's intermediate
files are removed before the next, and its outputs are final when its progress line is printed)."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Iterator

import pandas as pd

from neurovfm.utils.atomic import write_csv, write_text

from .record import SCHEMA_VERSION, attention_arrays, attention_peak, diagnoses, top_positive, validate_record
from .run import (
    MODALITY_PROBE,
    Workspace,
    generate_findings,
    ingest_source,
    predict_config,
    probe_study,
    study_features,
)
from .sources import classify

log = logging.getLogger("neurovfm")
EXCLUSION_COLUMNS = ["stage", "unit", "study_id", "series_id", "file_id", "n_files", "reason", "detail"]
HEADER_IDENTIFIERS = {
    "study_instance_uid": "StudyInstanceUID",
    "accession_number": "AccessionNumber",
    "patient_id": "PatientID",
    "patient_name": "PatientName",
    "study_date": "StudyDate",
}


def _exclusion_rows(frame: pd.DataFrame, stage: str) -> list[dict]:
    rows = []
    for r in frame.to_dict("records"):
        rows.append(
            {
                "stage": stage,
                "unit": r["unit"],
                "study_id": str(r.get("study_id") or ""),
                "series_id": str(r.get("series_id") or ""),
                "file_id": str(r.get("file_id") or ""),
                "n_files": int(float(r.get("n_files") or 0)),
                "reason": r["reason"],
                "detail": str(r["detail"]),
            }
        )
    return rows


def _identifiers(src, ing, series_ids: set) -> dict:
    """Header identifiers of the study (only for --keep-identifiers): from one of its files."""
    out = {"input": str(src.path)}
    if ing.kind != "dicom":
        return out
    import pydicom

    rel = ing.files[ing.files["series_id"].isin(series_ids)]["path"].iloc[0]
    ds = pydicom.dcmread(str(ing.root / rel), stop_before_pixels=True)
    out.update({k: (str(ds.get(tag)) if ds.get(tag) is not None else None) for k, tag in HEADER_IDENTIFIERS.items()})
    return out


def predict_study(
    bundle, cfg: dict, ing, study: dict, work: Path, workers: int, read_s: float, indication: str | None = None
) -> tuple[dict, dict]:
    """(record, drawing inputs) of one ingested study; ``indication`` reaches the report generator only (the record
    says whether one was given, never what it said)."""
    from neurovfm.store.index import load_index

    sid, modality = study["study_id"], study["modality"]
    feats = study_features(bundle, cfg, ing, sid, work / sid, workers)
    t0 = time.perf_counter()
    probe = probe_study(bundle, cfg, feats["features"], sid, modality)
    t1 = time.perf_counter()
    gen = generate_findings(bundle, feats["features"], sid, modality, indication)
    t2 = time.perf_counter()
    shards = load_index(feats["shards"])
    encoded = {v["series_id"] for v in shards["volumes"]}
    series = ing.series[ing.series["study_id"] == sid].sort_values("series_id")
    excluded = [e for e in _exclusion_rows(ing.exclusions, "ingest") if e["study_id"] == sid]
    excluded += _exclusion_rows(feats["excluded"], "preprocess")
    rows, attention, att = [], [], None
    if probe is not None:
        rows = diagnoses(probe, modality)
        att = attention_arrays(probe["attention"], probe["names"])
        for i in top_positive(rows, int(cfg["predict"]["overlays"])):
            peak = attention_peak(*att, i, shards, sid)
            if peak is not None:
                attention.append({"diagnosis": rows[i]["name"], **peak})
    seconds = {"read": read_s, **feats["seconds"], "probes": t1 - t0, "generation": t2 - t1}
    seconds = {k: round(v, 4) for k, v in seconds.items()}
    seconds["total"] = round(sum(seconds.values()), 4)
    record = {
        "schema_version": SCHEMA_VERSION,
        "bundle_id": bundle.bundle_id,
        "study": {
            "study_id": sid,
            "modality": modality,
            "probe": probe["probe_modality"] if probe else None,
            "series": [
                {
                    "series_id": r["series_id"],
                    "sequence": r["sequence"],
                    "orientation": r["orientation"],
                    "n_slices": int(r["n_slices"]),
                    "encoded": r["series_id"] in encoded,
                }
                for r in series.to_dict("records")
            ],
        },
        "excluded": [{k: e[k] for k in EXCLUSION_COLUMNS if k != "study_id"} for e in excluded],
        "diagnoses": rows,
        "attention": attention,
        "generated": {
            **{k: gen[k] for k in ("status", "findings", "raw", "error", "n_series")},
            "indication_given": bool(indication),
        },
        "triage": gen["triage"],
        "timing_s": seconds,
    }
    return record, {"att": att, "shards": feats["shards"], "logits": None if probe is None else probe["logits"]}


def write_study(record: dict, drawing: dict, cfg: dict, out_dir: Path) -> None:
    from neurovfm.store.reader import ShardReader

    from .summary import draw_summary, overlay_panels

    validate_record(record)
    sdir = out_dir / record["study"]["study_id"]
    write_text(sdir / "prediction.json", json.dumps(record, indent=1) + "\n")
    panels = []
    if drawing["att"] is not None and record["attention"]:
        shards = ShardReader(drawing["shards"])
        patch = tuple(cfg["preprocess"]["patch"])
        panels = overlay_panels(record, *drawing["att"], shards, patch, int(cfg["predict"]["overlays"]))
        shards.close()
    draw_summary(record, panels, int(cfg["predict"]["top_findings"]), sdir / "summary.png")


def progress_line(n: int, record: dict) -> str:
    s = record["study"]
    pos = [d for d in record["diagnoses"] if d["positive"]]
    top = max(pos, key=lambda d: d["calibrated_probability"]) if pos else None
    return (
        f"[{n}] {s['study_id']} {s['modality']}: {sum(x['encoded'] for x in s['series'])} series, "
        f"{len(pos)} positive"
        + (f" (top {top['name']} {top['calibrated_probability']:.2f})" if top else "")
        + f", triage {record['triage']}, {record['timing_s']['total']:.1f} s"
    )


def predict(
    bundle,
    inputs,
    out_dir,
    keep_identifiers: bool = False,
    modality: str | None = None,
    sequence: str | None = None,
    work_dir=None,
    workers: int = 1,
    echo=print,
    indication: str | None = None,
) -> Iterator[dict]:
    """Yield the record of every study of every input (written before it is yielded); ``echo`` gets one progress
    line per study and per excluded study."""
    from neurovfm.ingest.deid import resolve_key

    cfg = predict_config(bundle.cfg, workers)
    key = resolve_key(cfg["deid"], cfg["run"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    all_excluded, n = [], 0
    for src in classify(inputs):
        with Workspace(work_dir) as ws:
            ing = ingest_source(cfg, src, ws.path, key, workers, modality, sequence)
            rows = _exclusion_rows(ing.exclusions, "ingest")
            studies = ing.studies.sort_values("study_id").to_dict("records")
            included = {s["study_id"] for s in studies}
            for sid in sorted({r["study_id"] for r in rows if r["study_id"] and r["study_id"] not in included}):
                reasons = sorted({r["reason"] for r in rows if r["study_id"] == sid})
                echo(f"[-] {sid}: excluded ({', '.join(reasons)})")
            read_s = ing.seconds / max(len(studies), 1)  # header reading is one pass over the input
            for study in studies:
                if MODALITY_PROBE.get(study["modality"]) is None:
                    continue
                record, drawing = predict_study(bundle, cfg, ing, study, ws.path, workers, read_s, indication)
                if keep_identifiers:
                    record["identifiers"] = _identifiers(src, ing, {s["series_id"] for s in record["study"]["series"]})
                write_study(record, drawing, cfg, out_dir)
                n += 1
                echo(progress_line(n, record))
                all_excluded += [{**e, "study_id": study["study_id"]} for e in record["excluded"]]
                yield record
            all_excluded += [r for r in rows if r["study_id"] not in included]
        write_csv(out_dir / "exclusions.csv", pd.DataFrame(all_excluded, columns=EXCLUSION_COLUMNS))


def run(bundle_path, inputs, out_dir, **kwargs) -> list[dict]:
    """Load and verify the bundle, then :func:`predict` everything (the CLI's entry point)."""
    from neurovfm.bundle.load import load_bundle

    bundle = load_bundle(bundle_path)
    echo = kwargs.pop("echo", lambda line: print(line, file=sys.stdout, flush=True))
    return list(predict(bundle, inputs, out_dir, echo=echo, **kwargs))
