"""DICOM ingestion end to end: walk, read headers, assemble volumes, de-identify, split, write.

Outputs (contracts in workflow/ARCHITECTURE.md): ``out_dir/{series,studies,exclusions}.csv``,
``out_dir/summary.json``; ``private_dir/files.csv`` and ``private_dir/reports.jsonl``.
Nothing written under ``out_dir`` holds a path, a name, a birth date, an accession number or an
address: identifiers are keyed hashes and free text is scrubbed.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

import pandas as pd

from neurovfm.ingest import geometry as geo
from neurovfm.ingest import inputs
from neurovfm.ingest.classify import has_contrast, sequence_family
from neurovfm.ingest.deid import keyed_hash
from neurovfm.ingest.demographics import age_years, parse_da
from neurovfm.ingest.discover import read_headers, walk
from neurovfm.ingest.ledger import Ledger
from neurovfm.ingest.reports import Identifiers, identifiers_from_header, join_reports, read_reports, scrubber
from neurovfm.ingest.series import SeriesParams, Slice, assemble_series
from neurovfm.ingest.splits import AFTER_WINDOW, assign_splits
from neurovfm.ingest.tables import write_outputs
from neurovfm.utils.progress import Progress

log = logging.getLogger("neurovfm")

SERIES_FIELDS = (
    "modality",
    "series_description",
    "image_type",
    "manufacturer",
    "field_strength",
    "contrast_agent",
    "scanning_sequence",
)
STUDY_FIELDS = ("study_date", "patient_age", "sex", "ethnicity", "institution")


@dataclass
class SeriesAcc:
    study_uid: str
    info: dict
    files: list[Slice] = field(default_factory=list)
    max_b: float | None = None


@dataclass
class StudyAcc:
    info: dict
    patient_key: str
    ident: Identifiers
    accession: str | None


class Collector:
    """Folds header records into per-study and per-series state, keeping only what later steps need."""

    def __init__(self, key: bytes, ledger: Ledger):
        self.key, self.ledger = key, ledger
        self.series: dict[str, SeriesAcc] = {}
        self.studies: dict[str, StudyAcc] = {}

    def add(self, rec: dict) -> None:
        fid = keyed_hash(rec["path"], self.key, "file")
        if rec["reason"]:
            self.ledger.add("file", rec["reason"], 1, rec["detail"], file_id=fid)
            return
        st, se = rec["study_uid"], rec["series_uid"]
        if st not in self.studies:
            patient_key = rec.get("patient_id") or f"study-without-patient-id:{st}"
            self.studies[st] = StudyAcc(
                {k: rec.get(k) for k in STUDY_FIELDS}, patient_key, identifiers_from_header(rec), rec.get("accession")
            )
        else:
            self.studies[st].ident.merge(identifiers_from_header(rec))
        acc = self.series.get(se)
        if acc is None:
            acc = self.series[se] = SeriesAcc(st, {k: rec.get(k) for k in SERIES_FIELDS})
        elif acc.study_uid != st:
            self.ledger.add(
                "file",
                "series_study_conflict",
                1,
                "series UID reused in another study",
                file_id=fid,
                series_id=keyed_hash(se, self.key, "series"),
                study_id=keyed_hash(st, self.key, "study"),
            )
            return
        b = rec.get("diffusion_b_value")
        if b is not None:
            acc.max_b = b if acc.max_b is None else max(acc.max_b, b)
        acc.files.append(Slice.from_record(rec))


def _mode(values):
    vals = [v for v in values if v not in (None, "")]
    if not vals:
        return None
    c = Counter(vals)
    return sorted(c.items(), key=lambda kv: (-kv[1], str(kv[0])))[0][0]


def _assemble(col: Collector, params: SeriesParams, key: bytes, oblique_deg: float, ledger: Ledger):
    """Volume rows (dicts, one per included volume) and file rows for files.csv."""
    rows, file_rows = [], []
    prog = Progress(len(col.series), "series assembly", log, unit="series")
    for se in sorted(col.series):
        acc = col.series.pop(se)
        study = col.studies[acc.study_uid]
        study_id = keyed_hash(acc.study_uid, key, "study")
        info = acc.info
        res = assemble_series(acc.files, info["series_description"], info["image_type"], params)
        for rej in res.rejections:
            sid = keyed_hash(se + (f"#{rej.stack}" if rej.stack else ""), key, "series")
            if rej.unit == "file":
                for p in rej.paths:
                    ledger.add(
                        "file",
                        rej.reason,
                        1,
                        rej.detail,
                        file_id=keyed_hash(p, key, "file"),
                        series_id=sid,
                        study_id=study_id,
                    )
            else:
                ledger.add("series", rej.reason, len(rej.paths), rej.detail, series_id=sid, study_id=study_id)
        scrub = scrubber(study.ident)
        desc = scrub(info["series_description"] or "")
        for vol in res.volumes:
            sid = keyed_hash(se + (f"#{vol.stack}" if vol.stack else ""), key, "series")
            rows.append(
                {
                    "series_id": sid,
                    "study_id": study_id,
                    "study_uid": acc.study_uid,
                    "modality": info["modality"],
                    "sequence": sequence_family(
                        info["modality"],
                        info["series_description"],
                        info["contrast_agent"],
                        acc.max_b,
                        info["scanning_sequence"],
                    ),
                    "orientation": geo.orientation_label(vol.normal, oblique_deg),
                    "n_slices": vol.n_slices,
                    "rows": vol.rows,
                    "cols": vol.cols,
                    "pixel_spacing_row": vol.pixel_spacing[0],
                    "pixel_spacing_col": vol.pixel_spacing[1],
                    "slice_spacing": round(vol.slice_spacing, 6),
                    "slice_thickness": vol.slice_thickness,
                    "tilt_deg": round(vol.tilt_deg, 4),
                    "manufacturer": info["manufacturer"] or "",
                    "field_strength": info["field_strength"],
                    "series_description": desc,
                    "contrast": int(has_contrast(info["series_description"], info["contrast_agent"])),
                    "stack": vol.stack,
                    "affine_lps": json.dumps([round(float(v), 6) for v in vol.affine.ravel()]),
                }
            )
            file_rows += [
                {"file_id": keyed_hash(p, key, "file"), "series_id": sid, "slice_index": k, "path": p}
                for k, p in enumerate(vol.paths)
            ]
        prog.update()
    prog.close()
    return rows, file_rows


def _study_table(col: Collector, vols: pd.DataFrame, key: bytes, age_cap: int) -> pd.DataFrame:
    rows = []
    for st, grp in vols.groupby("study_uid", sort=True):
        s = col.studies[st]
        date = parse_da(s.info["study_date"])
        mr = grp[grp["modality"] == "MR"]
        rows.append(
            {
                "study_uid": st,
                "study_id": keyed_hash(st, key, "study"),
                "patient_id": keyed_hash(s.patient_key, key, "patient"),
                "modality": _mode(grp["modality"]),
                "study_date": date,
                "study_year": date.year if date else None,
                "age": age_years(s.info["patient_age"], s.ident.birth_date, date, age_cap),
                "sex": (s.info["sex"] or "").upper()[:1] if (s.info["sex"] or "").upper()[:1] in "MFO" else "",
                "ethnicity": s.info["ethnicity"] or "",
                "site": s.info["institution"] or "",
                "manufacturer": _mode(grp["manufacturer"]) or "",
                "field_strength": _mode(mr["field_strength"]) if len(mr) else None,
                "n_series": len(grp),
            }
        )
    return pd.DataFrame(rows)


def _reports(reports_csv, studies: pd.DataFrame, col: Collector):
    """(has_report per study_uid, jsonl rows keyed by study_uid, counts)."""
    if not reports_csv:
        return {}, {}, {"reports_total": 0, "reports_matched": 0, "reports_without_study": 0, "reports_ambiguous": 0}
    df = read_reports(reports_csv)
    by_acc: dict[str, list[str]] = {}
    for st, s in col.studies.items():
        if s.accession:
            by_acc.setdefault(s.accession, []).append(st)
    matched, counts = join_reports(df, col.studies, by_acc)
    included = set(studies["study_uid"])
    counts["reports_for_excluded_studies"] = sum(len(v) for k, v in matched.items() if k not in included)
    out = {}
    for st, idxs in matched.items():
        if st not in included:
            continue
        ident = Identifiers(**vars(col.studies[st].ident))
        ident.names, ident.ids = list(ident.names), list(ident.ids)
        extra_ids = [df.at[i, "patient_id"] for i in idxs] + [df.at[i, "accession_number"] for i in idxs]
        ident.ids += [i for i in extra_ids if i and i not in ident.ids]
        scrub = scrubber(ident)
        out[st] = {
            "text": "\n\n".join(scrub(df.at[i, "report_text"]) for i in idxs),
            "indication": " ".join(scrub(df.at[i, "indication"]) for i in idxs if df.at[i, "indication"]),
        }
    return {st: st in out for st in included}, out, counts


def run_ingest(
    dicom_dir: str, reports_csv: str | None, out_dir: str, private_dir: str, cfg: dict, key: bytes, workers: int = 1
) -> dict:
    """Ingest a DICOM export. Returns the summary dict (also written to ``out_dir/summary.json``)."""
    icfg = cfg["ingest"]
    files, links = walk(dicom_dir)
    log.info("ingest: %d files found (%d symbolic links skipped)", len(files), links)
    records = read_headers(
        dicom_dir,
        files,
        workers=max(1, int(workers or 1)),
        chunk_size=int(icfg["chunk_size"]),
        modalities=tuple(icfg["modalities"]),
    )
    return ingest_records(records, len(files), links, reports_csv, out_dir, private_dir, cfg, key)


def ingest_records(
    records: Iterable[dict],
    n_files: int,
    links: int,
    reports_csv: str | None,
    out_dir,
    private_dir,
    cfg: dict,
    key: bytes,
) -> dict:
    """Everything after the header reads: ``records`` (one per file of the sorted file list, in its order;
    :func:`neurovfm.ingest.discover.read_headers` or the merged chunks of :mod:`neurovfm.ingest.scatter`)
    folded into volumes, studies, splits, reports and the exclusion ledger, then written."""
    icfg, dcfg, scfg = cfg["ingest"], cfg["deid"], cfg["splits"]
    params = SeriesParams.from_config(icfg)
    ledger = Ledger()
    col = Collector(key, ledger)
    for rec in records:
        col.add(rec)

    rows, file_rows = _assemble(col, params, key, float(icfg["oblique_deg"]), ledger)
    vols = pd.DataFrame(rows)
    studies = (
        _study_table(col, vols, key, int(dcfg["age_cap"]))
        if len(vols)
        else pd.DataFrame(columns=["study_uid", "study_id", "study_date"])
    )
    has_report, report_rows, report_counts = _reports(reports_csv, studies, col)

    if len(studies):
        studies["has_report"] = studies["study_uid"].map(lambda u: bool(has_report.get(u, False)))
        dated = studies["study_date"].notna()
        split = pd.Series(index=studies.index, dtype=object)
        split[dated] = assign_splits(
            studies[dated],
            scfg["cutoff"],
            scfg["test_end"],
            int(scfg["val_per_modality"]),
            int(cfg["seed"]),
            float(scfg["max_val_fraction"]),
        )
        split[~dated] = "no_study_date"
        studies["split"] = split
        for _, s in studies[studies["split"].isin([AFTER_WINDOW, "no_study_date"])].iterrows():
            n = int(vols.loc[vols["study_uid"] == s["study_uid"], "n_slices"].sum())
            detail = (
                "study date after the prospective test window" if s["split"] == AFTER_WINDOW else "no valid StudyDate"
            )
            ledger.add("study", s["split"], n, detail, study_id=s["study_id"])
        studies = studies[studies["split"].isin(["train", "val", "test"])]
        vols = vols[vols["study_uid"].isin(set(studies["study_uid"]))].copy()
        vols["split"] = vols["study_uid"].map(dict(zip(studies["study_uid"], studies["split"])))
        report_counts["studies_with_report"] = int(studies["has_report"].sum())
        report_counts["studies_without_report"] = int((~studies["has_report"]).sum())
    keep_sids = set(vols["series_id"]) if len(vols) else set()
    file_rows = [r for r in file_rows if r["series_id"] in keep_sids]
    reports = (
        [
            {
                "study_id": s["study_id"],
                "modality": s["modality"],
                "indication": report_rows[s["study_uid"]]["indication"],
                "report_text": report_rows[s["study_uid"]]["text"],
            }
            for _, s in studies.iterrows()
            if s["study_uid"] in report_rows
        ]
        if len(studies)
        else []
    )
    inputs.require_volumes(n_files, len(vols), ledger.files_by_reason(), bool(icfg["allow_empty"]))
    if ledger.n_transient:
        log.warning(
            "ingest: %d files excluded for transient reasons (missing, permission, I/O); fix the cause and "
            "read their headers again to include them (workflow: --forcerun ingest_walk; docs/troubleshooting.md)",
            ledger.n_transient,
        )
    summary = write_outputs(
        out_dir,
        private_dir,
        vols,
        studies,
        ledger,
        file_rows,
        reports,
        n_files_seen=n_files,
        symlinks_skipped=links,
        report_counts=report_counts,
    )
    return summary
