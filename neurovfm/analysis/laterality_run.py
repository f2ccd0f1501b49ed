"""The laterality check on the workflow's files (protocol and AUROC definitions: :mod:`.laterality`).

Per encoder and modality:

1. the test studies with a lateralised finding that the diagnostic probe detects (its ``predictions.csv`` and
   validation thresholds); nothing else is re-encoded, which keeps the costly step small;
2. a side probe (the project's probe trainer, classes ``left`` / ``right``) fitted on the train studies
   with a lateralised finding and chosen on the validation ones, from the stored frozen features;
3. each selected study encoded twice by the frozen encoder (as stored and mirrored across the L-R axis),
   both rounded to the feature store's precision, and scored by the side probe.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from neurovfm.analysis.laterality import SIDES, FlippedVolumes, eligible_studies, laterality_aurocs, side_targets
from neurovfm.probes.predictions import MODALITIES, laterality_map, read_predictions

log = logging.getLogger("neurovfm")

SUMMARY_COLUMNS = [
    "encoder",
    "modality",
    "n_lateralised",
    "n_not_detected",
    "n_ambiguous",
    "n_studies",
    "n_left",
    "n_right",
    "auroc_left",
    "auroc_right",
    "auroc_combined",
    "side_probe_val_auroc",
    "status",
    "reason",
]


def side_label_table(labels_csv, lateral: Mapping, diagnoses: Sequence[str] | None) -> pd.DataFrame:
    """``study_id, split, left, right`` for the studies of a label table with a lateralised finding."""
    df = pd.read_csv(labels_csv, dtype={"study_id": str, "split": str}, usecols=["study_id", "split"])
    y = side_targets(lateral, list(df["study_id"]), diagnoses)
    df[list(SIDES)] = y.astype(int)
    return df[y.any(axis=1)].reset_index(drop=True)


def fit_side_probe(cfg: dict, feature_dir, side_table: pd.DataFrame, modality: str, windows, seed: int):
    """(model, validation mean AUROC) of the left / right probe on the stored features."""
    from neurovfm.probes.bags import load_bagsets
    from neurovfm.probes.train import select_probe

    settings = {**cfg["probes"], **cfg["analysis"]["laterality"]["side_probe"]}
    bags = load_bagsets(
        feature_dir, side_table, list(SIDES), MODALITIES[modality], splits=("train", "val"), windows=windows
    )
    fit, _, _ = select_probe(bags["train"], bags["val"], settings, seed)
    return fit.model, fit.val_auroc


@torch.no_grad()
def study_tokens(encoder, dataset, positions: Sequence[int], fcfg: dict, device) -> torch.Tensor:
    """float32 [N, D] tokens of the given volumes (every window of the dataset), at the store's precision."""
    from neurovfm.features import store
    from neurovfm.features.extract import encode_items, volume_items

    device = torch.device(device)
    patch = tuple(
        dataset.dataset.reader.index["patch"] if isinstance(dataset, FlippedVolumes) else dataset.reader.index["patch"]
    )
    items = (it for i in positions for it in volume_items(dataset, i, patch))
    feats = [
        f.numpy().astype(store.DTYPE)
        for _, f in encode_items(encoder, items, int(fcfg["max_tokens"]), device, fcfg["precision"])
    ]
    return torch.from_numpy(np.concatenate(feats).astype(np.float32))


@torch.no_grad()
def side_logits(probe, tokens: torch.Tensor) -> np.ndarray:
    cu = torch.tensor([0, tokens.shape[0]], dtype=torch.int32)
    logits, _ = probe(tokens, cu)
    return logits[0].double().numpy()


def _summary(enc: str, mod: str, sel: pd.DataFrame, rows: list[dict], val_auc: float, status: str, reason: str) -> dict:
    d = pd.DataFrame(rows)
    side = d["side"].to_numpy() if len(d) else np.array([])
    aucs = (
        laterality_aurocs(d["delta_left"], d["delta_right"], side)
        if len(d)
        else {"auroc_left": np.nan, "auroc_right": np.nan, "auroc_combined": np.nan}
    )
    return {
        "encoder": enc,
        "modality": mod,
        "n_lateralised": len(sel),
        "n_not_detected": int((sel["reason"] == "not_detected").sum()),
        "n_ambiguous": int(sel["reason"].isin(["bilateral", "conflicting_sides", "unknown_side"]).sum()),
        "n_studies": len(d),
        "n_left": int((side == "left").sum()),
        "n_right": int((side == "right").sum()),
        **aucs,
        "side_probe_val_auroc": val_auc,
        "status": status,
        "reason": reason,
    }


def laterality_one(
    cfg: dict,
    encoder: str,
    modality: str,
    probe_dir,
    feature_dir,
    labels_csv,
    lateral: Mapping,
    test_index,
    stats_json,
    encoder_pt,
    device: str = "cpu",
) -> tuple[dict, list[dict]]:
    """Summary row and per-study rows for one encoder and modality (``modality``: ct / mri)."""
    from neurovfm.features.encoders import load_frozen
    from neurovfm.probes.checkpoint import load_probe
    from neurovfm.probes.evaluate import read_thresholds
    from neurovfm.store.dataset import VolumeDataset

    lcfg = cfg["analysis"]["laterality"]
    preds, names = read_predictions(Path(probe_dir) / "predictions.csv")
    thr = read_thresholds(Path(probe_dir) / "thresholds.csv", names)
    sel = eligible_studies(preds[preds["split"] == "test"], names, thr, lateral, lcfg["diagnoses"])
    ok = sel[sel["reason"] == ""]
    if lcfg["max_studies"] is not None:
        ok = ok.iloc[: lcfg["max_studies"]]
    n_side = {s: int((ok["side"] == s).sum()) for s in SIDES}
    if min(n_side.values()) < lcfg["min_per_side"]:
        why = (
            f"{n_side['left']} left / {n_side['right']} right correctly detected lateralised test studies "
            f"({lcfg['min_per_side']} of each needed)"
        )
        return _summary(encoder, modality, sel, [], np.nan, "not_evaluable", why), []

    _, meta = load_probe(Path(probe_dir) / "probe.pt")
    windows = meta["ct_windows"]
    side_table = side_label_table(labels_csv, lateral, lcfg["diagnoses"])
    seed = int(cfg["probes"]["seed"] if cfg["probes"]["seed"] is not None else cfg["seed"])
    probe, val_auc = fit_side_probe(cfg, feature_dir, side_table, modality, windows, seed)
    probe.eval()

    fcfg = cfg["features"]
    enc, _ = load_frozen(encoder, cfg, encoder_pt, seed=fcfg["seed"], device=device)
    enc.eval()
    dataset = VolumeDataset(test_index, stats_json, ct_channels=[w for w in windows if w != "mri"])
    flipped = FlippedVolumes(dataset)
    by_study: dict[str, list[int]] = {}
    for i, v in enumerate(dataset.volumes):
        if v["modality"] == MODALITIES[modality]:
            by_study.setdefault(v["study_id"], []).append(i)
    rows = []
    for r in ok.itertuples():
        pos = by_study.get(r.study_id, [])
        if not pos:
            raise KeyError(f"test study {r.study_id} has predictions but no volume in {test_index}")
        before = side_logits(probe, study_tokens(enc, dataset, pos, fcfg, device))
        after = side_logits(probe, study_tokens(enc, flipped, pos, fcfg, device))
        rows.append(
            {
                "encoder": encoder,
                "modality": MODALITIES[modality],
                "study_id": r.study_id,
                "side": r.side,
                "diagnoses": r.diagnoses,
                "n_volumes": len(pos),
                "logit_left": before[0],
                "logit_right": before[1],
                "logit_left_flipped": after[0],
                "logit_right_flipped": after[1],
                "delta_left": after[0] - before[0],
                "delta_right": after[1] - before[1],
            }
        )
    summary = _summary(encoder, MODALITIES[modality], sel, rows, val_auc, "ok", "")
    log.info(
        "laterality %s %s: %d studies (%d left, %d right), AUROC combined %.3f",
        encoder,
        modality,
        len(rows),
        summary["n_left"],
        summary["n_right"],
        summary["auroc_combined"],
    )
    return summary, rows


def laterality(
    cfg: dict,
    encoders: Sequence[str],
    probes_dir,
    features_dir,
    labels: Mapping,
    findings_jsonl,
    test_index,
    stats_json,
    encoder_pts: Mapping,
    device: str = "cpu",
    modalities: Sequence[str] = ("ct", "mri"),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, per-study table) over encoders and modalities, plus a pooled row per encoder (``all``)."""
    lateral = laterality_map(findings_jsonl)
    summaries, studies = [], []
    for enc in encoders:
        enc_rows = []
        for mod in modalities:
            s, rows = laterality_one(
                cfg,
                enc,
                mod,
                Path(probes_dir) / enc / mod,
                Path(features_dir) / enc,
                labels[mod],
                lateral,
                test_index,
                stats_json,
                encoder_pts.get(enc),
                device,
            )
            summaries.append({**s, "modality": MODALITIES[mod]})
            enc_rows += rows
        studies += enc_rows
        d = pd.DataFrame(enc_rows)
        per = pd.DataFrame([x for x in summaries if x["encoder"] == enc])
        pooled = {
            "encoder": enc,
            "modality": "all",
            **{
                k: int(per[k].sum())
                for k in ("n_lateralised", "n_not_detected", "n_ambiguous", "n_studies", "n_left", "n_right")
            },
            "side_probe_val_auroc": np.nan,
        }
        min_side = cfg["analysis"]["laterality"]["min_per_side"]
        if len(d) and min(pooled["n_left"], pooled["n_right"]) >= min_side:
            pooled.update(
                laterality_aurocs(d["delta_left"], d["delta_right"], d["side"].to_numpy()), status="ok", reason=""
            )
        else:
            pooled.update(
                auroc_left=np.nan,
                auroc_right=np.nan,
                auroc_combined=np.nan,
                status="not_evaluable",
                reason=f"{pooled['n_left']} left / {pooled['n_right']} right studies re-scored "
                f"({min_side} of each needed)",
            )
        summaries.append(pooled)
    study_cols = [
        "encoder",
        "modality",
        "study_id",
        "side",
        "diagnoses",
        "n_volumes",
        "logit_left",
        "logit_right",
        "logit_left_flipped",
        "logit_right_flipped",
        "delta_left",
        "delta_right",
    ]
    return pd.DataFrame(summaries, columns=SUMMARY_COLUMNS), pd.DataFrame(studies, columns=study_cols)
