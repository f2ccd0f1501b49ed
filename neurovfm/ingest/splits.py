"""Study-level splits: a prospective test window by date, and a validation hold-out chosen by patient.

Studies dated in [cutoff, test_end] are ``test``; later ones are ``after_test_window`` (the caller
ledgers them). Earlier studies are ``train`` except those of the validation patients: patients are
visited in an order fixed by a hash of (seed, patient id) and moved to ``val`` with all their
pre-cutoff studies while a modality they have studies in is still short of its quota. So no patient is
in both train and val, and the choice is reproducible. The quota counts studies with a report (the
validation set selects probes, which need labels) unless a modality has no reported study at all;
it is capped at ``max_val_fraction`` of that modality's counted studies.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import pandas as pd

AFTER_WINDOW = "after_test_window"


def _order_key(seed: int, patient_id: str) -> str:
    return hashlib.sha256(f"{seed}\x1f{patient_id}".encode()).hexdigest()


def _as_date(value) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def assign_splits(
    studies: pd.DataFrame, cutoff, test_end, val_per_modality: int, seed: int, max_val_fraction: float = 0.5
) -> pd.Series:
    """Split label per study. ``studies`` needs ``study_id, patient_id, modality, study_date``
    (datetime.date) and ``has_report`` (bool); the result is indexed like ``studies``."""
    cutoff, test_end = _as_date(cutoff), _as_date(test_end)
    if test_end < cutoff:
        raise ValueError(f"splits.test_end {test_end} is before splits.cutoff {cutoff}")
    dates = studies["study_date"]
    split = pd.Series("train", index=studies.index, dtype=object)
    split[dates >= cutoff] = "test"
    split[dates > test_end] = AFTER_WINDOW
    dev = studies[dates < cutoff]
    if dev.empty or val_per_modality <= 0:
        return split

    counted = dev["has_report"].astype(bool)
    for mod, grp in dev.groupby("modality"):
        if not grp["has_report"].any():
            counted[grp.index] = True
    quota = {}
    for mod, grp in dev[counted].groupby("modality"):
        quota[mod] = min(int(val_per_modality), int(max_val_fraction * len(grp)))
    filled = dict.fromkeys(quota, 0)

    by_patient = {pid: grp for pid, grp in dev.groupby("patient_id")}
    for pid in sorted(by_patient, key=lambda p: _order_key(seed, p)):
        if all(filled[m] >= quota[m] for m in quota):
            break
        grp = by_patient[pid]
        mine = grp[counted[grp.index]]["modality"].value_counts()
        if mine.empty or not any(filled[m] < quota[m] for m in mine.index):
            continue
        split[grp.index] = "val"
        for m, n in mine.items():
            filled[m] += int(n)
    return split
