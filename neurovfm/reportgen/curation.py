"""Training-set curation: draws with replacement, each study weighted by 1 / prevalence of its rarest label.

Prevalences are counted within a modality (CT and MRI have their own ontologies); a study without any
label has the label "none" of its modality. ``curation: none`` draws uniformly (the uncurated baseline).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def rarest_label_weights(labels: pd.DataFrame, modality: pd.Series) -> np.ndarray:
    """``labels``: studies x diagnoses 0/1 (rows aligned with ``modality``) -> one weight per study."""
    y = labels.to_numpy(dtype=bool)
    mod = np.asarray(modality)
    w = np.zeros(len(y), dtype=float)
    for m in np.unique(mod):
        rows = mod == m
        ym = y[rows]
        none = ~ym.any(axis=1)
        prevalence = ym.mean(axis=0)
        p_none = none.mean()
        rarest = np.where(ym, prevalence[None, :], np.inf).min(axis=1)
        w[rows] = 1.0 / np.where(none, p_none, rarest)
    return w


def draw(study_ids: list[str], weights: np.ndarray | None, size: int, seed: int) -> list[str]:
    """``size`` study ids drawn with replacement (uniformly when ``weights`` is None)."""
    if not study_ids:
        raise ValueError("no training studies to draw from")
    rng = np.random.default_rng(seed)
    p = None if weights is None else np.asarray(weights, float) / np.sum(weights)
    return [study_ids[i] for i in rng.choice(len(study_ids), size=int(size), replace=True, p=p)]


def label_table(ct_csv, mri_csv, study_ids: list[str]) -> tuple[pd.DataFrame, pd.Series]:
    """Per-modality label columns of ``study_ids`` (a study's other-modality columns are 0) and modality."""
    frames = []
    for path, m in ((ct_csv, "CT"), (mri_csv, "MR")):
        df = pd.read_csv(path, dtype={"study_id": str}).set_index("study_id")
        df = df.drop(columns=[c for c in ("split",) if c in df.columns])
        df.columns = [f"{m}:{c}" for c in df.columns]
        df["_modality"] = m
        frames.append(df)
    table = pd.concat(frames).fillna(0)
    missing = [s for s in study_ids if s not in table.index]
    if missing:
        raise KeyError(f"{len(missing)} training studies have no label row (e.g. {missing[:3]})")
    table = table.loc[study_ids]
    return table.drop(columns="_modality").astype(int), table["_modality"]
