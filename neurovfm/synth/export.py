"""Write the embedded health system's PACS export: DICOM tree, report query, ground truth, manifest.

A worker job is one patient: the person (head size, brain anatomy) is drawn once from a stream of (seed, patient
index), then each study from streams of (seed, study index), through ``np.random.SeedSequence``; so the export
is byte-identical for any number of worker processes.
A worker renders one series at a time and writes it slice by slice, so memory stays bounded by
the largest series of a study.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from neurovfm.synth import bad_inputs as bad
from neurovfm.synth import dicom_writer as dw
from neurovfm.synth.cohort import build_cohort
from neurovfm.synth.protocols import ProtocolParams, expected_outcome, plan_series
from neurovfm.synth.reports import write_report
from neurovfm.synth.workers import ordered_map
from neurovfm.utils.atomic import atomic_open, write_csv
from neurovfm.utils.progress import Progress

log = logging.getLogger("neurovfm")
REPORT_COLUMNS = [
    "accession_number",
    "patient_id",
    "study_date",
    "modality",
    "exam_description",
    "indication",
    "report_text",
]
# Optional ``synth`` keys and their defaults (config.yaml may set any of them).
# Keys of the synth section that other sections own: the generator writes the expected ingest outcome
# and the prospective share of studies, so it must use the same thresholds as ingest and splits.
DERIVED_KEYS = ("recent_from", "ingest_min_slices", "ingest_max_tilt_deg")


WINDOWS = {"ct": (40.0, 80.0), "ct_contrast": (50.0, 150.0), "bone": (600.0, 2800.0), "localizer": (50.0, 500.0)}
_NAME_CHARS = list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def synth_settings(cfg: dict) -> dict:
    """The ``synth`` section of a whole run configuration plus the keys owned by ``ingest`` and ``splits``."""
    out = dict(cfg["synth"])
    out.update(
        recent_from=cfg["splits"]["cutoff"],
        ingest_min_slices=cfg["ingest"]["min_slices"],
        ingest_max_tilt_deg=cfg["ingest"]["max_tilt_deg"],
    )
    return out


def _check(synth_cfg: dict) -> dict:
    missing = [k for k in DERIVED_KEYS if k not in synth_cfg]
    if missing:
        raise KeyError(f"synth settings lack {missing}: build them with synth_settings(whole_config)")
    return synth_cfg


def benchmark_cfg(synth_cfg: dict, target_files: int = 20000, files_per_study: float = 130.0) -> dict:
    """A ``synth`` override for the ingest benchmark: tiny 32x32 matrices, enough studies for ``target_files``.

    Keys changed: n_studies, mr_matrix, ct_matrix, mprage_fraction (0: no 150-slice 3D series),
    report_missing_fraction kept. ``files_per_study`` is the measured mean of the default protocols.
    """
    cfg = dict(synth_cfg)
    cfg.update(
        n_studies=int(math.ceil(target_files / files_per_study)), mr_matrix=[32], ct_matrix=[32], mprage_fraction=0.0
    )
    return cfg


def _stream(seed: int, index: int, name: str) -> np.random.Generator:
    """An independent random stream of one study (``name`` separates what it is used for)."""
    tag = int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "little")
    return np.random.default_rng(np.random.SeedSequence([seed, index, tag]))


class _Paths:
    """Random nested folders for one study; series are spread over them as real exports do."""

    def __init__(self, root: Path, rng: np.random.Generator):
        self.rng, self.used = rng, set()
        self.folders = []
        for _ in range(int(rng.integers(1, 4))):
            parts = ["".join(rng.choice(_NAME_CHARS, int(rng.integers(6, 11)))) for _ in range(int(rng.integers(2, 4)))]
            self.folders.append(root.joinpath(*parts))

    def next(self) -> Path:
        folder = self.folders[int(self.rng.integers(len(self.folders)))]
        while True:
            name = "".join(self.rng.choice(_NAME_CHARS, 10))
            name = name + ".dcm" if self.rng.random() < 0.6 else name
            path = folder / name
            if path not in self.used:
                self.used.add(path)
                return path


def _derived_volume(role: str, source: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bone-kernel twin of a CT series (sharper, noisier) or an ADC map computed from a DWI trace."""
    if role == "bone":
        blurred = ndi.gaussian_filter(source, sigma=(0, 1.0, 1.0))
        return (source + 1.5 * (source - blurred) + rng.normal(0, 25.0, source.shape)).astype(np.float32)
    if role == "adc":
        hi = float(np.percentile(source, 99.5)) or 1.0
        tissue = source > 0.05 * hi
        return np.where(tissue, 1.3 * hi - source, 0.0).astype(np.float32)
    raise ValueError(f"no derived volume for role {role!r}")


def _render_series(series, patient, study, rng, volumes: dict, slice_samples: int) -> np.ndarray:
    from neurovfm.synth.phantom import render  # the renderer is imported in the worker process

    if series.role in ("bone", "adc"):
        return _derived_volume(series.role, volumes[series.source], rng)
    scanner = {"manufacturer": study.manufacturer, "model": study.model, "field_strength": study.field_strength}
    parts = [
        render(patient, series.modality, series.sequence, acq, rng, scanner=scanner, max_sub=slice_samples)
        for acq in series.acqs
    ]
    return np.concatenate(parts, axis=0).astype(np.float32)


def _apply_tilt_defect(series_list, params: ProtocolParams, rng) -> bool:
    """Make the primary axial CT (and its bone twin) tilted beyond what ingest accepts."""
    soft = next((s for s in series_list if s.role == "image" and s.modality == "CT" and s.expected == "included"), None)
    if soft is None:
        return False
    tilt = float(params.max_tilt_deg + rng.uniform(3, 8))
    new_acq = replace(soft.acqs[0], gantry_tilt_deg=tilt, _cache={})
    for s in series_list:
        if s is soft or (s.role == "bone" and s.source == soft.number):
            s.acqs = [new_acq]
            s.expected = expected_outcome(s, params.min_slices, params.max_tilt_deg)
    return True


def person_of(patient, seed: int, cfg: dict):
    """The person behind a patient's studies (head size, brain anatomy), from the patient's own stream."""
    from neurovfm.synth.phantom import build_person

    return build_person(
        _stream(seed, patient.index, "person"), patient.sex, variation_mm=float(cfg["anatomy_variation_mm"])
    )


def export_patient(plans: list, seed: int, cfg: dict, root: str) -> list[dict]:
    """Render and write every study of one patient (a worker job): the person is drawn once, each study from its
    own stream. Returns the studies' results in the order of ``plans``."""
    person = person_of(plans[0].patient, seed, cfg)
    return [export_study(plan, seed, cfg, root, person) for plan in plans]


def export_study(plan, seed: int, cfg: dict, root: str, person=None) -> dict:
    """Render and write one study; returns its reports.csv row and counts. ``person``: its patient's
    (:func:`person_of`; None: drawn here)."""
    from neurovfm.synth.phantom import build_patient

    root = Path(root)
    if person is None:
        person = person_of(plan.patient, seed, cfg)
    params = ProtocolParams.from_cfg(cfg)
    if "too_few_slices" in plan.bad_inputs:
        params = replace(params, short_series_fraction=1.0)
    if "mixed_orientations" in plan.bad_inputs:
        params = replace(params, force_smart_survey=True)
    patient = build_patient(
        _stream(seed, plan.index, "patient"),
        plan.age,
        plan.patient.sex,
        [dict(f) for f in plan.findings],
        person=person,
    )
    rng_s = _stream(seed, plan.index, "series")
    series_list = plan_series(plan, rng_s, params, patient.head_center_lps, patient.head_extent_mm)
    defects = {}
    for kind in plan.bad_inputs:
        if kind == "excessive_tilt":
            _apply_tilt_defect(series_list, params, rng_s)
        elif kind not in ("non_image_sop_class", "too_few_slices", "mixed_orientations"):
            d = bad.plan_series_defect(kind, series_list, rng_s, params.min_slices)
            if d is not None:
                defects.setdefault(d["series"], []).append(d)

    study_uid = dw.make_uid(seed, plan.index, "study")
    frame_uid = dw.make_uid(seed, plan.index, "frame")
    base = dw.patient_study_attrs(plan, study_uid, _institution_address(plan.site))
    paths = _Paths(root / "dicom", _stream(seed, plan.index, "paths"))
    rng_px = _stream(seed, plan.index, "pixels")
    needed_sources = {s.source for s in series_list if s.source is not None}
    volumes: dict[int, np.ndarray] = {}
    truth_series, n_files, n_bytes = [], 0, 0
    lo, hi = cfg["mr_stored_max"]
    for s in series_list:
        series_uid = dw.make_uid(seed, plan.index, "series", s.number)
        written: list[Path] = []
        if s.role == "dose":
            sop = dw.make_uid(seed, plan.index, "sop", s.number, 0)
            acq = s.acqs[0]
            ds = dw.secondary_capture(plan, s, base, series_uid, sop, dw.dose_page(rng_px, acq.rows, acq.cols))
            path = paths.next()
            dw.write_dataset(ds, path)
            written.append(path)
        else:
            volume = _render_series(s, patient, plan, rng_px, volumes, int(cfg["slice_samples"]))
            if s.number in needed_sources:
                volumes[s.number] = volume
            n = volume.shape[0]
            sops = [dw.make_uid(seed, plan.index, "sop", s.number, k) for k in range(n)]
            window = (
                WINDOWS["localizer"]
                if s.role == "localizer"
                else WINDOWS["bone"]
                if s.role == "bone"
                else WINDOWS.get(s.sequence, (0.0, 0.0))
            )
            target = float(rng_px.uniform(lo, hi))
            if s.modality == "MR":
                window = (round(target * 0.4, 1), round(target * 0.8, 1))
            todo = defects.get(s.number, [])
            drop = {d["drop"] for d in todo if d["kind"] == "missing_slices"}
            odd = {d["odd"] for d in todo if d["kind"] == "inconsistent_dimensions"}
            cache = dw.ElementCache()  # the slices of a series share most of their encoded header
            for k, ds in enumerate(
                dw.image_datasets(plan, s, volume, base, series_uid, frame_uid, sops, window, mr_target=target)
            ):
                if k in drop:
                    continue
                if k in odd:
                    img = np.frombuffer(ds.PixelData, dtype=np.int16 if ds.PixelRepresentation else np.uint16)
                    img = bad.odd_matrix(img.reshape(ds.Rows, ds.Columns))
                    ds.Rows, ds.Columns = img.shape
                    ds.PixelData = np.ascontiguousarray(img).tobytes()
                path = paths.next()
                dw.write_dataset(ds, path, cache)
                written.append(path)
                for d in todo:
                    if d["kind"] == "truncated_pixel_data" and d["truncate"] == k:
                        bad.truncate_file(path, rng_px, len(ds.PixelData))
                    if d["kind"] == "duplicate_instance" and d["copy"] == k:
                        dup = paths.next()
                        shutil.copyfile(path, dup)
                        written.append(dup)
            del volume
        n_files += len(written)
        n_bytes += sum(p.stat().st_size for p in written)
        n_excl = sum(d["n_files"] for d in s.file_defects)
        truth_series.append(
            {
                "series_instance_uid": series_uid,
                "series_number": s.number,
                "description": s.description,
                "modality": s.modality,
                "sequence": s.sequence,
                "role": s.role,
                "orientation": s.acqs[0].plane if len({a.plane for a in s.acqs}) == 1 else "mixed",
                "image_type": "\\".join(s.image_type),
                "n_files": len(written),
                "expected": s.expected,
                "n_included_files": len(written) - n_excl if s.expected == "included" else 0,
                "file_exclusions": list(s.file_defects),
                "paths": sorted(p.relative_to(root).as_posix() for p in written),
            }
        )
    volumes.clear()
    if "non_image_sop_class" in plan.bad_inputs:
        extra = _non_image_objects(plan, seed, base, paths, len(series_list))
        truth_series += extra
        n_files += len(extra)

    findings = [_jsonable(f) for f in patient.findings]
    report = write_report(plan, patient.findings, _stream(seed, plan.index, "report"))
    truth = {
        "study_instance_uid": study_uid,
        "accession_number": plan.accession,
        "patient_id": plan.patient.mrn,
        "modality": plan.modality,
        "study_date": plan.study_date.isoformat(),
        "age": plan.age,
        "sex": plan.patient.sex,
        "ethnicity": plan.patient.ethnicity,
        "site": plan.site,
        "manufacturer": plan.manufacturer,
        "vendor": plan.vendor,
        "model": plan.model,
        "field_strength": plan.field_strength,
        "labels": plan.labels,
        "findings": findings,
        "resolved": [_jsonable(f) for f in plan.resolved],
        "triage": plan.triage,
        "indication": plan.indication,
        "report_present": plan.report_present,
        "key_findings": report.key_findings,
        "contrast": plan.contrast,
        "planted_defects": list(plan.bad_inputs),
        "series": truth_series,
    }
    with atomic_open(root / "truth" / f"{study_uid}.json", "w", encoding="utf-8") as fh:
        json.dump(truth, fh, indent=1)
    row = None
    if plan.report_present:
        row = {
            "accession_number": plan.accession,
            "patient_id": plan.patient.mrn,
            "study_date": plan.study_date.isoformat(),
            "modality": plan.modality,
            "exam_description": dw.exam_description(plan),
            "indication": plan.indication,
            "report_text": report.text,
        }
    return {
        "row": row,
        "n_files": n_files,
        "n_series": len(truth_series),
        "n_bytes": n_bytes,
        "patient": plan.patient.index,
        "modality": plan.modality,
    }


def _non_image_objects(plan, seed, base, paths: _Paths, n_series: int) -> list[dict]:
    """A Basic Text SR and an Encapsulated PDF inside the study, each its own series."""
    out = []
    for j, (what, build) in enumerate(
        (
            ("sr", lambda uid, sop, num: dw.basic_text_sr(base, uid, sop, num, "Preliminary read: see final report.")),
            ("pdf", lambda uid, sop, num: dw.encapsulated_pdf(base, uid, sop, num, bad.tiny_pdf("Requisition"))),
        ),
        1,
    ):
        number = n_series + j
        uid = dw.make_uid(seed, plan.index, "series", number)
        path = paths.next()
        dw.write_dataset(build(uid, dw.make_uid(seed, plan.index, "sop", number, 0), 900 + j), path)
        out.append(
            {
                "series_instance_uid": uid,
                "series_number": 900 + j,
                "description": what,
                "modality": "OT",
                "sequence": None,
                "role": "non_image",
                "orientation": None,
                "image_type": "",
                "n_files": 1,
                "expected": "excluded:non_image_sop_class",
                "n_included_files": 0,
                "file_exclusions": [],
                "paths": [_rel(path)],
            }
        )
    return out


def _rel(path: Path) -> str:
    """Path relative to the export root (it starts at the ``dicom`` folder)."""
    parts = path.parts
    return "/".join(parts[len(parts) - 1 - parts[::-1].index("dicom") :])


def _institution_address(site: str) -> str:
    return f"{1500 + 100 * (sum(map(ord, site)) % 9)} E MEDICAL CENTER DR, ANN ARBOR MI 48109"


def _jsonable(f: dict) -> dict:
    out = {}
    for k, v in f.items():
        if isinstance(v, np.ndarray):
            v = [float(x) for x in v.tolist()]
        elif isinstance(v, (tuple, list)):
            v = [float(x) if isinstance(x, (np.floating, float)) else x for x in v]
        elif isinstance(v, np.floating):
            v = float(v)
        elif isinstance(v, np.integer):
            v = int(v)
        out[k] = v
    return out


def planned_cohort(cfg: dict, seed: int) -> list:
    """The export's study plans: the cohort, with the bad inputs planted when ``cfg['bad_inputs']``."""
    plans = build_cohort(cfg, seed)
    if cfg.get("bad_inputs"):
        bad.assign_study_defects(
            plans, np.random.default_rng(np.random.SeedSequence([seed, 0xBAD])), int(cfg["bad_inputs_per_kind"])
        )
    return plans


def write_export(out_dir: Path, synth_cfg: dict, seed: int, workers: int = 1) -> dict:
    """``synth_cfg`` comes from :func:`synth_settings`. Write ``out_dir/{dicom/, reports.csv, truth/, manifest.json}``; returns the manifest."""
    out_dir = Path(out_dir)
    cfg = _check(synth_cfg)
    plans = planned_cohort(cfg, seed)
    (out_dir / "dicom").mkdir(parents=True, exist_ok=True)
    by_patient: dict[int, list] = {}  # a patient's studies share one person: one worker job per patient
    for p in plans:
        by_patient.setdefault(p.patient.index, []).append(p)
    groups = list(by_patient.values())
    progress = Progress(len(plans), "synth export", log, unit="studies")
    done = {}
    for group, res in zip(groups, ordered_map(export_patient, [(g, seed, cfg, str(out_dir)) for g in groups], workers)):
        done.update((p.index, r) for p, r in zip(group, res, strict=True))
        progress.update(len(group))
    progress.close()
    results = [done[p.index] for p in plans]
    planted = []
    if cfg.get("bad_inputs"):
        planted = bad.write_export_level(
            out_dir / "dicom", np.random.default_rng(np.random.SeedSequence([seed, 0xF11E])), seed
        )
    rows = [r["row"] for r in results if r["row"] is not None]
    write_csv(out_dir / "reports.csv", pd.DataFrame(rows, columns=REPORT_COLUMNS))
    manifest = {
        "seed": seed,
        "config": {k: v for k, v in cfg.items()},
        "counts": {
            "studies": len(results),
            "patients": len({r["patient"] for r in results}),
            "studies_ct": sum(r["modality"] == "CT" for r in results),
            "studies_mr": sum(r["modality"] == "MR" for r in results),
            "series": sum(r["n_series"] for r in results),
            "files": sum(r["n_files"] for r in results) + len(planted),
            "image_bytes": sum(r["n_bytes"] for r in results),
            "reports": len(rows),
        },
        "export_level_files": planted,
    }
    with atomic_open(out_dir / "manifest.json", "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1, default=str)
    return manifest
