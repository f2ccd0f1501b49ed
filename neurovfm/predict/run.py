"""The prediction of one input after another, study by study, through the workflow's own steps:

1. ingest (``neurovfm.ingest``): headers, series assembly, the exclusion rules and their reason codes; every dated
   study is put in the ``test`` split (the date window of a training run does not apply to a new study);
2. preprocessing (``neurovfm.preprocess.run.run_preprocess``) of that study's series into a private shard;
3. frozen features (``neurovfm.features.extract.extract``) with the bundle's encoder and training statistics;
4. the probe of the study's modality (``neurovfm.probes``: bags, ``predict``, ``study_attention``), the validation
   thresholds and the Platt calibration of the bundle;
5. findings from the report generator (``neurovfm.reportgen.generate``) without an indication, and the rule
   judge's triage level (``neurovfm.reportgen.triage``) of them, read as the workflow reads an answer.

Intermediate files (paths into the input, shards, features) live in a private work folder that is removed after
each study; the output folder gets per study ``{study_id}/prediction.json`` and the summary page, where
``study_id`` is the keyed hash that the workflow's ingest gives the study.
"""

from __future__ import annotations

import copy
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .sources import Source, stage_nifti

log = logging.getLogger("neurovfm")
MODALITY_PROBE = {"CT": "ct", "MR": "mri"}
STAGES = ("read", "preprocess", "encoder", "probes", "generation")


def predict_config(cfg: dict, workers: int) -> dict:
    """The bundle's configuration for a prediction: every dated study is a test study, an input without an
    includable series is reported rather than an error, one shard per split, ``workers`` processes."""
    c = copy.deepcopy(cfg)
    c["splits"].update({"cutoff": "0001-01-01", "test_end": "9999-12-31", "val_per_modality": 0})
    c["ingest"].update({"allow_empty": True, "workers": workers})
    c["preprocess"]["workers"] = workers
    c["store"]["shards"] = {"train": 1, "val": 1, "test": 1}
    return c


@dataclass
class Ingested:
    kind: str
    root: Path
    series: pd.DataFrame
    studies: pd.DataFrame
    exclusions: pd.DataFrame
    files_csv: Path
    seconds: float
    summary: dict = field(default_factory=dict)
    files: pd.DataFrame | None = None  # files.csv (private: paths into the input), read once


def ingest_source(
    cfg: dict,
    src: Source,
    work: Path,
    key: bytes,
    workers: int,
    modality: str | None = None,
    sequence: str | None = None,
) -> Ingested:
    t0 = time.perf_counter()
    ing, priv = work / "ingest", work / "private"
    if src.kind == "dicom":
        from neurovfm.ingest.run import run_ingest

        root = src.path
        summary = run_ingest(str(root), None, str(ing), str(priv), cfg, key, workers)
    else:
        from neurovfm.ingest.nifti import run_ingest_nifti

        root, table = stage_nifti(src, work, modality, sequence)
        summary = run_ingest_nifti(str(root), str(table), str(ing), str(priv), cfg, key)
    ids = {"series_id": str, "study_id": str, "patient_id": str}
    return Ingested(
        src.kind,
        Path(root),
        pd.read_csv(ing / "series.csv", dtype=ids),
        pd.read_csv(ing / "studies.csv", dtype=ids),
        pd.read_csv(ing / "exclusions.csv", dtype=ids).fillna(""),
        priv / "files.csv",
        time.perf_counter() - t0,
        summary,
        pd.read_csv(priv / "files.csv", dtype=str),
    )


def study_features(bundle, cfg: dict, ing: Ingested, study_id: str, sdir: Path, workers: int) -> dict:
    """Shards and features of one study under ``sdir``; returns paths, exclusions and stage seconds."""
    from neurovfm.features.extract import extract, resolve_device
    from neurovfm.preprocess.run import run_preprocess

    t0 = time.perf_counter()
    sdir.mkdir(parents=True, exist_ok=True)
    series = ing.series[ing.series["study_id"] == study_id]
    series.to_csv(sdir / "series.csv", index=False)
    ing.files[ing.files["series_id"].isin(set(series["series_id"]))].to_csv(sdir / "files.csv", index=False)
    run_preprocess(
        sdir / "series.csv",
        sdir / "files.csv",
        ing.root,
        sdir / "shards",
        cfg,
        workers=workers,
        kind=ing.kind,
        private_dir=sdir,
    )
    excluded = pd.read_csv(sdir / "shards" / "exclusions.csv", dtype=str).fillna("")
    t1 = time.perf_counter()
    encoder, mcfg = bundle.encoder
    fcfg = cfg["features"]
    index = sdir / "shards" / "test" / "index.json"
    extract(
        encoder,
        bundle.card["encoder"],
        mcfg,
        {"test": index},
        bundle.stats_json,
        sdir / "features",
        device=resolve_device(None),
        max_tokens=fcfg["max_tokens"],
        chunk_tokens=fcfg["chunk_tokens"],
        precision=fcfg["precision"],
        progress_every_s=fcfg["progress_every_s"],
    )
    return {
        "shards": index,
        "features": sdir / "features" / "test" / "index.json",
        "excluded": excluded,
        "seconds": {"preprocess": t1 - t0, "encoder": time.perf_counter() - t1},
    }


def probe_study(bundle, cfg: dict, features_index: Path, study_id: str, modality: str) -> dict | None:
    """Logits, probabilities, calibrated probabilities, decisions and attention of the study's probe; None if the
    study has no token of that modality."""
    from neurovfm.bundle.calibration import apply_calibration
    from neurovfm.eval.thresholds import apply_thresholds
    from neurovfm.features.store import FeatureReader
    from neurovfm.probes.attention import study_attention
    from neurovfm.probes.bags import BagSet
    from neurovfm.probes.predictions import sigmoid
    from neurovfm.probes.train import predict

    model, meta, calib = bundle.probe(MODALITY_PROBE[modality])
    names = list(meta["class_names"])
    labels = pd.DataFrame({"study_id": [study_id], "split": ["test"], **{c: [0] for c in names}})
    bags = BagSet(FeatureReader(features_index), labels, names, "test", meta["modality"], windows=meta["ct_windows"])
    if len(bags) == 0:
        return None
    logits = predict(model, bags, int(cfg["probes"]["eval_max_tokens"]))[0]
    prob = sigmoid(logits)
    thresholds = np.asarray(meta["thresholds"], dtype=float)
    return {
        "names": names,
        "logits": logits,
        "prob": prob,
        "calibrated": apply_calibration(logits, calib),
        "calibrated_fitted": calib["fitted"].to_numpy(bool),
        "thresholds": thresholds,
        "decision": apply_thresholds(prob[None], thresholds)[0],
        "attention": study_attention(model, bags, 0),
        "probe_modality": MODALITY_PROBE[modality],
    }


def generate_findings(
    bundle, features_index: Path, study_id: str, modality: str, indication: str | None = None
) -> dict:
    """The generator's answer, parsed as the workflow parses it, and the rule judge's triage of what it says (a
    malformed answer's raw text is read as one finding, as in the workflow). Without ``indication`` the prompt is the
    workflow's ``no_indication`` variant, with it the ``indication`` variant (the judge then reads it as context)."""
    from neurovfm.reportgen.data import StudyTokens
    from neurovfm.reportgen.generate import parse_findings
    from neurovfm.reportgen.run import _judge_items
    from neurovfm.reportgen.triage import RuleJudge

    rg = bundle.cfg["reportgen"]
    studies = StudyTokens(features_index, rg)
    series = studies(study_id)
    if not series:
        return {"status": "no_series", "findings": [], "raw": "", "error": None, "triage": None, "n_series": 0}
    text, _ = bundle.generator.generate(series, indication or None)
    items, status, error = parse_findings(text)
    level = RuleJudge.from_config(rg["triage"]).triage(
        _judge_items({"status": status, "findings": items, "raw": text}), indication or None, modality
    )
    return {"status": status, "findings": items, "raw": text, "error": error, "triage": level, "n_series": len(series)}


class Workspace:
    """A private temporary folder (paths into the input, shards, features), removed when closed."""

    def __init__(self, parent: str | Path | None):
        if parent is not None:
            Path(parent).mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix="neurovfm-predict-", dir=parent))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)
