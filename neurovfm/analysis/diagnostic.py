"""The diagnostic analyses on the workflow's files: probe predictions, probe checkpoints, frozen features and
label tables in, tables out (label efficiency, cross-modal transfer, subgroups, laterality).

The statistics live in the engines (:mod:`.label_efficiency`, :mod:`.cross_modal`, :mod:`.subgroups`,
:mod:`.laterality`); this module only reads the inputs, loops over encoders and modalities, and records
why a piece could not be evaluated rather than failing (the demo is small). ``modality`` keys are the
workflow's ``ct`` / ``mri``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from neurovfm.probes.predictions import MODALITIES, read_predictions, split_arrays

log = logging.getLogger("neurovfm")

MODS = ("ct", "mri")
MODEL_COLUMNS = [
    "section",
    "encoder",
    "modality",
    "term",
    "coef",
    "se",
    "stat",
    "p",
    "ci_lo",
    "ci_hi",
    "status",
    "note",
]


def analysis_seed(cfg: dict) -> int:
    seed = cfg["analysis"]["seed"]
    return int(cfg["seed"] if seed is None else seed)


def reference_encoder(cfg: dict) -> str:
    ref = cfg["analysis"]["label_efficiency"]["reference_encoder"]
    return ref if ref is not None else cfg["pretrain"]["train"][0]


def train_positives(labels_csv, names: Sequence[str]) -> np.ndarray:
    """Training-split positives per class of a label table (``labels/{ct,mri}.csv``)."""
    df = pd.read_csv(labels_csv, dtype={"study_id": str, "split": str})
    return df.loc[df["split"] == "train", list(names)].sum(axis=0).to_numpy(int)


# ----------------------------------------------------------------------------- label efficiency
def _fittable(rows: pd.DataFrame) -> str:
    """Why OLS with HC3 cannot be fitted on these rows of one modality ("" when it can)."""
    if len(rows) < 4:
        return f"{len(rows)} included classes (4 needed)"
    if rows["n_train_pos"].nunique() < 2:
        return "training positives do not vary"
    return ""


def _fit_rows(table: pd.DataFrame, label: str) -> tuple[pd.DataFrame, list[dict]]:
    """The included rows of the modalities that can be fitted, and notes for the ones that cannot."""
    inc = table[table["included"]].dropna(subset=["f1"])
    keep, notes = [], []
    for mod, rows in inc.groupby("modality"):
        why = _fittable(rows)
        if why:
            notes.append(
                {"section": "scaling", "encoder": label, "modality": mod, "status": "not_evaluable", "note": why}
            )
        else:
            keep.append(rows)
    return (pd.concat(keep) if keep else inc.iloc[:0]), notes


def _coef_rows(coefs: pd.DataFrame, section: str, encoder: str, modality: str = "") -> list[dict]:
    return [
        {"section": section, "encoder": encoder, "modality": modality, **r, "status": "ok", "note": ""}
        for r in coefs.to_dict("records")
    ]


def label_efficiency_models(
    table: pd.DataFrame, encoders: Sequence[str], reference: str, lcfg: dict, n_boot: int, seed: int, alpha: float
) -> pd.DataFrame:
    """OLS per encoder, ANCOVA across encoders and label-equivalence folds as one long table."""
    from neurovfm.analysis.label_efficiency import ancova, coef_table, fit_scaling, label_equivalence

    rows, fit_data = [], {}
    for enc in encoders:
        data, notes = _fit_rows(table[table["encoder"] == enc], enc)
        rows += notes
        if data.empty:
            rows.append(
                {
                    "section": "scaling",
                    "encoder": enc,
                    "status": "not_evaluable",
                    "note": "no modality has enough included classes",
                }
            )
            continue
        fit = fit_scaling(data)
        fit_data[enc] = data
        rows += _coef_rows(fit.coefs, "scaling", enc)
        for r in fit.lines.to_dict("records"):
            for term in ("intercept", "slope"):
                rows.append(
                    {
                        "section": "line",
                        "encoder": enc,
                        "modality": r["modality"],
                        "term": term,
                        "coef": r[term],
                        "status": "ok",
                        "note": fit.formula,
                    }
                )
    usable = [e for e in encoders if e in fit_data]
    if reference not in usable or len(usable) < 2:
        rows.append(
            {
                "section": "label_equivalence",
                "encoder": reference,
                "status": "not_evaluable",
                "note": f"needs the reference {reference!r} and another encoder with fitted lines (fitted: {usable})",
            }
        )
        return pd.DataFrame(rows, columns=MODEL_COLUMNS)
    # the same classes and modalities for every encoder (the ones all of them could fit)
    common = set.intersection(*(set(zip(d["modality"], d["label"])) for d in fit_data.values()))
    both = pd.concat(fit_data.values())
    both = both[[k in common for k in zip(both["modality"], both["label"])]]
    folds, _ = label_equivalence(
        both,
        reference,
        n_boot=n_boot,
        seed=seed,
        alpha=alpha,
        ancova_alpha=lcfg["ancova_alpha"],
        reference_f1=lcfg["reference_f1"],
    )
    fit = ancova(both, reference, lcfg["ancova_alpha"])
    rows += _coef_rows(coef_table(fit.chosen), "ancova", "all")
    rows.append(
        {
            "section": "ancova",
            "encoder": "all",
            "term": "slope_equality",
            "p": fit.p_slope_equality,
            "status": "ok",
            "note": f"{'shared' if fit.shared_slope else 'encoder-specific'} slopes kept; {fit.formula}",
        }
    )
    for r in fit.lines.to_dict("records"):
        for term in ("intercept", "slope"):
            rows.append(
                {
                    "section": "ancova_line",
                    "encoder": r["encoder"],
                    "modality": sorted(common)[0][0],
                    "term": term,
                    "coef": r[term],
                    "status": "ok",
                    "note": fit.formula,
                }
            )
    for r in folds.to_dict("records"):
        rows.append(
            {
                "section": "label_equivalence",
                "encoder": r["encoder"],
                "term": "fold",
                "coef": r["fold"],
                "ci_lo": r["fold_lo"],
                "ci_hi": r["fold_hi"],
                "status": "ok",
                "note": f"reference={r['reference']}; slopes={r['slopes']}; p_slope_equality="
                f"{r['p_slope_equality']:.3g}; reference_f1={r['reference_f1']:.3f}; "
                f"n_classes={r['n_classes']}; n_boot={r['n_boot']}; n_failed={r['n_failed']}",
            }
        )
    return pd.DataFrame(rows, columns=MODEL_COLUMNS)


def label_efficiency(
    cfg: dict, encoders: Sequence[str], predictions: Mapping, labels: Mapping, modalities: Sequence[str] = MODS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``predictions``: {(encoder, modality): predictions.csv}; ``labels``: {modality: labels csv}.
    Returns (per-class table, models table)."""
    from neurovfm.analysis.label_efficiency import label_efficiency_table

    lcfg, acfg = cfg["analysis"]["label_efficiency"], cfg["analysis"]
    frames = []
    for enc in encoders:
        for mod in modalities:
            df, names = read_predictions(predictions[(enc, mod)])
            vs, vy = split_arrays(df, names, "val", what="logit")
            ts, ty = split_arrays(df, names, "test", what="logit")
            frames.append(
                label_efficiency_table(
                    enc,
                    MODALITIES[mod],
                    names,
                    train_positives(labels[mod], names),
                    vs,
                    vy,
                    ts,
                    ty,
                    lcfg["min_train_pos"],
                    lcfg["min_test_pos"],
                    lcfg["threshold"],
                )
            )
    table = pd.concat(frames, ignore_index=True)
    models = label_efficiency_models(
        table, encoders, reference_encoder(cfg), lcfg, acfg["n_boot"], analysis_seed(cfg), acfg["alpha"]
    )
    return table, models


# ----------------------------------------------------------------------------- cross-modal transfer
def _test_bags(feature_dir, labels_csv, mod: str, windows, class_names: Sequence[str]):
    """Test bags of modality ``mod`` whose outputs are named ``class_names`` (the scoring probe's classes; the
    labels come from the target's predictions table, so the bag labels are left at 0)."""
    from neurovfm.features.store import FeatureReader
    from neurovfm.probes.bags import BagSet, read_label_table

    table, _ = read_label_table(labels_csv, MODALITIES[mod])
    ids = table[["study_id", "split"]].copy()
    ids[list(class_names)] = 0
    return BagSet(
        FeatureReader(Path(feature_dir) / "test" / "index.json"),
        ids,
        list(class_names),
        "test",
        MODALITIES[mod],
        windows,
    )


def cross_modal(
    cfg: dict,
    encoders: Sequence[str],
    probes_dir,
    features_dir,
    labels: Mapping,
    directions: Sequence[tuple[str, str]] = (("ct", "mri"), ("mri", "ct")),
) -> pd.DataFrame:
    """Zero-shot transfer of each encoder's CT probe to MRI test studies and back (``probes_dir``/
    ``features_dir``: ``results/{run}/probes`` and ``results/{run}/features``)."""
    from neurovfm.analysis.cross_modal import cross_modal_deltas, transfer_classes, validate_pairs
    from neurovfm.probes.checkpoint import load_probe
    from neurovfm.probes.train import predict

    ccfg, acfg = cfg["analysis"]["cross_modal"], cfg["analysis"]
    pairs = validate_pairs(ccfg["pairs"])
    frames = []
    for enc in encoders:
        for src, tgt in directions:
            model, meta = load_probe(Path(probes_dir) / enc / src / "probe.pt")
            _, tmeta = load_probe(Path(probes_dir) / enc / tgt / "probe.pt")
            preds, tnames = read_predictions(Path(probes_dir) / enc / tgt / "predictions.csv")
            s_names, t_names = transfer_classes(pairs, MODALITIES[src])
            ok = [(s, t) for s, t in zip(s_names, t_names) if s in meta["class_names"] and t in tnames]
            bags = _test_bags(Path(features_dir) / enc, labels[tgt], tgt, tmeta["ct_windows"], meta["class_names"])
            transferred = predict(model, bags, cfg["probes"]["eval_max_tokens"])
            test = preds[preds["split"] == "test"].set_index("study_id").loc[bags.study_ids]
            s_cols = [meta["class_names"].index(s) for s, _ in ok]
            native = test[[f"logit:{t}" for _, t in ok]].to_numpy(float)
            y = test[[f"label:{t}" for _, t in ok]].to_numpy(int)
            df = cross_modal_deltas(
                native,
                transferred[:, s_cols],
                y,
                [t for _, t in ok],
                MODALITIES[src],
                MODALITIES[tgt],
                [s for s, _ in ok],
                band=ccfg["band"],
                n_boot=acfg["n_boot"],
                seed=analysis_seed(cfg),
                min_pos=ccfg["min_pos"],
                alpha=acfg["alpha"],
            )
            df.insert(0, "encoder", enc)
            frames.append(df)
            n_ok = int((df["status"] == "ok").sum())
            log.info("%s %s -> %s: %d shared diagnoses, %d evaluable", enc, src, tgt, len(df), n_ok)
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------- subgroups
def subgroups(
    cfg: dict, encoders: Sequence[str], predictions: Mapping, studies_csv, modalities: Sequence[str] = MODS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Subgroup AUROC differentials per encoder and modality (cells, subgroup means)."""
    from neurovfm.analysis.subgroups import subgroup_deltas

    scfg, acfg = cfg["analysis"]["subgroups"], cfg["analysis"]
    meta = pd.read_csv(studies_csv, dtype={"study_id": str}).set_index("study_id")
    cells, means = [], []
    for enc in encoders:
        for mod in modalities:
            df, names = read_predictions(predictions[(enc, mod)])
            test = df[df["split"] == "test"]
            scores, labels = split_arrays(df, names, "test", what="logit")
            m = meta.reindex(test["study_id"]).reset_index()
            c, mn = subgroup_deltas(
                scores,
                labels,
                m,
                names,
                scfg["variables"],
                scfg["age_bins"],
                min_pos=scfg["min_pos"],
                min_neg=scfg["min_neg"],
                n_boot=acfg["n_boot"],
                seed=analysis_seed(cfg),
                alpha=acfg["alpha"],
                band=scfg["band"],
                outlier_s=scfg["outlier_s"],
                max_levels=scfg["max_levels"],
                progress_every_s=acfg["progress_every_s"],
            )
            for t in (c, mn):
                t.insert(0, "modality", MODALITIES[mod])
                t.insert(0, "encoder", enc)
            cells.append(c)
            means.append(mn)
            log.info(
                "%s %s subgroups: %d cells, %d evaluable, %d outliers",
                enc,
                mod,
                len(c),
                int((c["status"] == "ok").sum()),
                int(c["outlier"].sum()),
            )
    return pd.concat(cells, ignore_index=True), pd.concat(means, ignore_index=True)
