"""The balanced triage test set: equal numbers of studies per (modality, acuity) cell of the generation split.

Acuity ground truth: ``truth`` reads the synthetic export's truth files (the acuity the embedded health system
assigned to each study, independent of everything the pipeline extracts); ``labels`` derives it from the
report labels and the ontology's ``urgent`` flags (most specific diagnoses, as the rule judge does), for a
hospital run without expert acuity labels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from neurovfm.labels.ontology import load_ontology

from .triage import LEVELS, most_specific

MODALITIES = ("CT", "MR")


def acuity_from_truth(truth: dict[str, dict]) -> dict[str, str]:
    """{study_id: acuity} from truth records keyed by hashed study id (``labels.evaluate.load_truth``)."""
    out = {}
    for sid, rec in truth.items():
        level = str(rec.get("triage", "")).lower()
        if level not in LEVELS:
            raise ValueError(f"truth record of {sid} has no valid triage level ({rec.get('triage')!r})")
        out[sid] = level
    return out


def acuity_from_labels(ct_csv, mri_csv) -> dict[str, str]:
    out = {}
    for path, m in ((ct_csv, "CT"), (mri_csv, "MR")):
        onto = load_ontology(m)
        df = pd.read_csv(path, dtype={"study_id": str}).set_index("study_id")
        names = [n for n in onto.names if n in df.columns]
        for sid, row in df[names].iterrows():
            present = {n for n in names if row[n] == 1}
            if not present:
                out[sid] = "unremarkable"
            else:
                urgent = any(onto[n].urgent for n in most_specific(onto, present))
                out[sid] = "urgent" if urgent else "routine"
    return out


def balanced_set(candidates: pd.DataFrame, per_cell: int | None, seed: int) -> pd.DataFrame:
    """``candidates``: study_id, modality, acuity. Draws ``per_cell`` studies of each of the six cells
    (None: as many as the smallest cell holds); raises if a cell has fewer."""
    counts = {
        (m, a): int(((candidates.modality == m) & (candidates.acuity == a)).sum()) for m in MODALITIES for a in LEVELS
    }
    n = min(counts.values()) if per_cell is None else int(per_cell)
    short = {f"{m}/{a}": c for (m, a), c in counts.items() if c < n or c == 0}
    if short:
        raise ValueError(f"the balanced triage set needs {n} studies per cell; cells short: {short}")
    rng = np.random.default_rng(seed)
    parts = []
    for m in MODALITIES:
        for a in LEVELS:
            cell = candidates[(candidates.modality == m) & (candidates.acuity == a)].sort_values("study_id")
            parts.append(cell.iloc[np.sort(rng.choice(len(cell), n, replace=False))])
    return pd.concat(parts, ignore_index=True)[["study_id", "modality", "acuity"]]
