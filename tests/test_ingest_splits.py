"""Study-level splits: temporal test window, patient-disjoint validation hold-out, determinism."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from neurovfm.ingest.splits import AFTER_WINDOW, assign_splits


def _studies(n_patients=400, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        for s in range(rng.integers(1, 4)):
            day = dt.date(2015, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3650)))
            rows.append(
                {
                    "study_id": f"s{p}_{s}",
                    "patient_id": f"p{p}",
                    "modality": rng.choice(["CT", "MR"]),
                    "study_date": day,
                    "has_report": bool(rng.random() < 0.9),
                }
            )
    return pd.DataFrame(rows)


def test_windows_and_patient_disjoint():
    st = _studies()
    split = assign_splits(st, "2023-06-01", "2024-05-31", val_per_modality=30, seed=7)
    d = st["study_date"]
    assert (split[d >= dt.date(2023, 6, 1)] != "train").all() and (split[d >= dt.date(2023, 6, 1)] != "val").all()
    assert (split[(d >= dt.date(2023, 6, 1)) & (d <= dt.date(2024, 5, 31))] == "test").all()
    assert (split[d > dt.date(2024, 5, 31)] == AFTER_WINDOW).all()
    assert set(split[d < dt.date(2023, 6, 1)]) == {"train", "val"}
    train_p = set(st.loc[split == "train", "patient_id"])
    val_p = set(st.loc[split == "val", "patient_id"])
    assert not train_p & val_p
    for mod in ("CT", "MR"):
        n_val = int(((split == "val") & (st["modality"] == mod) & st["has_report"]).sum())
        assert 30 <= n_val <= 36  # quota reached, overshoot at most one patient's studies


def test_deterministic_and_seeded():
    st = _studies()
    a = assign_splits(st, "2023-06-01", "2024-05-31", 30, seed=7)
    b = assign_splits(st.sample(frac=1.0, random_state=1).sort_index(), "2023-06-01", "2024-05-31", 30, seed=7)
    c = assign_splits(st, "2023-06-01", "2024-05-31", 30, seed=8)
    pd.testing.assert_series_equal(a, b)
    assert set(st.loc[a == "val", "patient_id"]) != set(st.loc[c == "val", "patient_id"])


def test_quota_capped_and_validated():
    st = _studies(n_patients=10)
    split = assign_splits(st, "2023-06-01", "2024-05-31", val_per_modality=1000, seed=1, max_val_fraction=0.5)
    dev = st["study_date"] < dt.date(2023, 6, 1)
    assert (split[dev] == "train").any()
    with pytest.raises(ValueError, match="before"):
        assign_splits(st, "2023-06-01", "2022-01-01", 1, seed=1)
