"""One external benchmark dataset end to end (config ``analysis.external.datasets.{name}``).

NIfTI folder + subjects CSV -> the project's NIfTI ingest (every study in one pool: the protocol makes its own
split) -> preprocessing -> frozen features with each encoder (normalised with the run's training statistics, as
every other feature of the run) -> per encoder and task the protocol of :mod:`neurovfm.analysis.external` with the
study-level attentive probe as ``fit_predict``. The chosen setting's fold probes are saved so that another dataset
can apply them frozen (``transfer_from``; the paper's ADNI -> AIBL / OASIS-1 protocol).

Layout: ``work_dir`` (``results/{run}/external/{name}/benchmark/``) holds ``ingest/``, ``shards/``,
``features/{encoder}/``, ``probes/{encoder}/{task}/`` (``fold{k}.pt``, ``predictions.csv``, ``cv.csv``);
``private_dir`` the ingest's private files.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from neurovfm.analysis import external as ex
from neurovfm.utils.atomic import write_csv

log = logging.getLogger("neurovfm")
POOL = "train"  # the single split every external study is ingested into
TABLE_COLUMNS = ["dataset", "trained_on", "encoder", "task", *ex.METRIC_COLUMNS, "hparams"]


def prepare(cfg: dict, nifti_dir, csv, work_dir, private_dir, encoders: dict, stats_json) -> dict:
    """Ingest, preprocess and extract features (``encoders``: name -> encoder.pt or None for random)."""
    from neurovfm.features.encoders import load_frozen
    from neurovfm.features.extract import extract
    from neurovfm.ingest.deid import resolve_key
    from neurovfm.ingest.nifti import run_ingest_nifti
    from neurovfm.preprocess.run import run_preprocess

    work, priv = Path(work_dir), Path(private_dir)
    priv.mkdir(parents=True, exist_ok=True)
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    table["split"] = POOL
    pooled = priv / "subjects_pooled.csv"
    write_csv(pooled, table)
    key = resolve_key(cfg["deid"], cfg["run"])
    summary = run_ingest_nifti(str(nifti_dir), str(pooled), str(work / "ingest"), str(priv), cfg, key)
    run_preprocess(
        work / "ingest" / "series.csv",
        priv / "files.csv",
        Path(nifti_dir),
        work / "shards",
        cfg,
        workers=1,
        kind="nifti",
    )
    fcfg = cfg["features"]
    for name, pt in encoders.items():
        enc, mcfg = load_frozen(name, cfg, pt, seed=fcfg["seed"])
        extract(
            enc,
            name,
            mcfg,
            {POOL: work / "shards" / POOL / "index.json"},
            stats_json,
            work / "features" / name,
            max_tokens=fcfg["max_tokens"],
            chunk_tokens=fcfg["chunk_tokens"],
            precision=fcfg["precision"],
            progress_every_s=fcfg["progress_every_s"],
        )
    return summary


def study_table(work_dir) -> pd.DataFrame:
    """Labelled studies with their (hashed) subject and modality: ``nifti_labels.csv`` joined to ``studies.csv``."""
    work = Path(work_dir)
    labels = pd.read_csv(work / "ingest" / "nifti_labels.csv", dtype={"study_id": str, "split": str})
    studies = pd.read_csv(work / "ingest" / "studies.csv", dtype={"study_id": str, "patient_id": str})
    return labels.merge(studies[["study_id", "patient_id", "modality"]], on="study_id", how="inner")


def probe_settings(cfg: dict, task_type: str) -> dict:
    """The ``probes`` section with ``analysis.external.probe`` over it and the task type."""
    p = cfg["analysis"]["external"]["probe"]
    return {
        **cfg["probes"],
        "epochs": p["epochs"],
        "grid": p["grid"],
        "max_train_tokens": p["max_train_tokens"],
        "task": task_type,
    }


class FoldProbes:
    """``fit_predict`` for :func:`neurovfm.analysis.external.run_protocol` over one feature store; keeps every
    fit so the chosen setting's fold probes can be saved."""

    def __init__(self, reader, studies: pd.DataFrame, names: list[str], modality: str, settings: dict, seed: int):
        self.reader, self.studies, self.names = reader, studies.reset_index(drop=True), list(names)
        self.modality, self.settings, self.seed = modality, settings, int(seed)
        self.fits: dict[tuple[str, int], object] = {}
        self._calls: dict[str, int] = {}

    def bags(self, idx, split: str):
        from neurovfm.probes.bags import BagSet

        lab = self.studies.iloc[np.sort(np.asarray(idx, int))][["study_id", *self.names]].copy()
        lab["split"] = split
        b = BagSet(self.reader, lab, self.names, split, self.modality, cache=split != "test")
        if b.missing:
            raise ValueError(f"{len(b.missing)} studies have no features (e.g. {b.missing[0]})")
        return b

    def __call__(self, train_idx, val_idx, test_idx, hp: dict):
        from neurovfm.probes.train import fit_probe, predict

        key = json.dumps(hp, sort_keys=True)
        fold = self._calls.get(key, 0)
        self._calls[key] = fold + 1
        fit = fit_probe(self.bags(train_idx, "train"), self.bags(val_idx, "val"), self.settings, hp, self.seed + fold)
        self.fits[(key, fold)] = fit
        m = int(self.settings["eval_max_tokens"])
        return (
            fit.decode(predict(fit.model, self.bags(val_idx, "val"), m)),
            fit.decode(predict(fit.model, self.bags(test_idx, "test"), m)),
        )


def _save_folds(folder: Path, probes: FoldProbes, result, task_type: str) -> None:
    from neurovfm.probes.checkpoint import save_probe

    key = json.dumps(result.best_hparams, sort_keys=True)
    s = probes.settings
    for f in range(len(result.split.folds)):
        fit = probes.fits[(key, f)]
        save_probe(
            folder / f"fold{f}.pt",
            fit.model,
            {
                "kind": s["kind"],
                "dim": probes.reader.dim,
                "class_names": probes.names,
                "hidden": s["hidden"],
                "attn_hidden": s["attn_hidden"],
                "hparams": result.best_hparams,
                "task": task_type,
                "target_scale": None
                if fit.target_scale is None
                else [np.asarray(v).tolist() for v in fit.target_scale],
                "thresholds": None if result.thresholds is None else np.asarray(result.thresholds).tolist(),
            },
        )


def _targets(studies: pd.DataFrame, names: list[str], task_type: str) -> np.ndarray:
    y = studies[names].to_numpy(dtype=float)
    return y[:, 0] if task_type == ex.REGRESSION else y.astype(int)


def benchmark(
    cfg: dict, dataset: str, work_dir, encoders: list[str], transfer_dirs: dict | None = None, seed: int = 0
) -> pd.DataFrame:
    """The protocol for every (encoder, task) of ``dataset``; rows of ``TABLE_COLUMNS``. ``transfer_dirs``:
    (source dataset, task) -> that dataset's ``benchmark`` folder, whose fold probes are applied here frozen."""
    import torch

    from neurovfm.features.store import FeatureReader
    from neurovfm.probes.checkpoint import load_probe
    from neurovfm.probes.train import grid_candidates, predict

    ecfg, an = cfg["analysis"]["external"], cfg["analysis"]
    dcfg = ecfg["datasets"][dataset]
    work = Path(work_dir)
    studies = study_table(work)
    mods = sorted(set(studies["modality"]))
    if len(mods) != 1:
        raise ValueError(f"external dataset {dataset!r} mixes modalities {mods}; give one modality per dataset")
    rows = []
    for enc in encoders:
        reader = FeatureReader(work / "features" / enc / POOL / "index.json")
        have = set(reader.study_ids)
        pool = studies[studies["study_id"].isin(have)].reset_index(drop=True)
        if len(pool) < len(studies):
            log.warning(
                "%s/%s: %d labelled studies without features are left out", dataset, enc, len(studies) - len(pool)
            )
        subjects = pool["patient_id"].to_numpy()
        for task, tcfg in dcfg["tasks"].items():
            names, kind = list(tcfg["labels"]), tcfg["type"]
            probes = FoldProbes(reader, pool, names, mods[0], probe_settings(cfg, kind), seed)
            grid = grid_candidates(ecfg["probe"]["grid"])
            res = ex.run_protocol(
                probes,
                _targets(pool, names, kind),
                subjects,
                grid,
                kind,
                names,
                float(ecfg["test_fraction"]),
                int(ecfg["n_folds"]),
                int(ecfg["regression_bins"]),
                seed,
                int(an["n_boot"]),
                float(an["alpha"]),
                progress_every_s=float(an["progress_every_s"]),
            )
            out = work / "probes" / enc / task
            out.mkdir(parents=True, exist_ok=True)
            _save_folds(out, probes, res, kind)
            write_csv(out / "cv.csv", res.cv)
            pred = pd.DataFrame(
                {"study_id": pool["study_id"].iloc[res.split.test].to_numpy(), "subject": subjects[res.split.test]}
            )
            for j, n in enumerate(names):
                pred[f"label:{n}"] = pool[n].iloc[res.split.test].to_numpy()
                pred[f"score:{n}"] = res.test_scores[:, j]
            write_csv(out / "predictions.csv", pred)
            hp = json.dumps(res.best_hparams, sort_keys=True)
            rows += [
                {"dataset": dataset, "trained_on": dataset, "encoder": enc, "task": task, **r, "hparams": hp}
                for r in res.metrics.to_dict("records")
            ]
        for src in dcfg["transfer_from"]:
            folder = Path(transfer_dirs[(src["dataset"], src["task"])]) / "probes" / enc / src["task"]
            folds = sorted(folder.glob("fold*.pt"))
            if not folds:
                raise FileNotFoundError(f"no fold probes in {folder}")
            scores, meta = [], None
            for f in folds:
                model, meta = load_probe(f)
                names = list(meta["class_names"])
                b = FoldProbes(reader, pool, names, mods[0], {}, seed).bags(np.arange(len(pool)), "test")
                with torch.no_grad():
                    s = predict(model, b, int(cfg["probes"]["eval_max_tokens"]))
                if meta["target_scale"] is not None:
                    s = s * np.asarray(meta["target_scale"][1]) + np.asarray(meta["target_scale"][0])
                scores.append(s)
            metrics = ex.evaluate_predictions(
                np.mean(scores, axis=0),
                _targets(pool, names, meta["task"]),
                subjects,
                meta["task"],
                names,
                meta["thresholds"],
                int(an["n_boot"]),
                seed,
                float(an["alpha"]),
            )
            rows += [
                {
                    "dataset": dataset,
                    "trained_on": src["dataset"],
                    "encoder": enc,
                    "task": src["task"],
                    **r,
                    "hparams": json.dumps(meta["hparams"], sort_keys=True),
                }
                for r in metrics.to_dict("records")
            ]
        reader.close()
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)
