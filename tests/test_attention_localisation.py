"""Attention localisation scoring (neurovfm.analysis.attention_localisation): side and distance percentile of an
attention peak, its controls, the targets taken from labels + report sides + ground truth, and the summary's
intervals against naive references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neurovfm.analysis.attention_localisation import Target, lesion_targets, localise, score_peak, summarise

PATCH, SPACING = (4, 16, 16), (1.0, 1.0, 1.0)


def _volume():
    """A volume whose array axes are LPS-aligned: column index -> x (towards the patient's left)."""
    return {"origin_lps": [-100.0, -100.0, 0.0], "direction_lps": [[0, 0, 1], [0, 1, 0], [1, 0, 0]]}


def _grid():
    """Tokens of one slice, 12 x 12, as (slice, row, col) coordinates."""
    return np.array([(0, r, c) for r in range(12) for c in range(12)], dtype=np.int16)


def _lps(coords):
    from neurovfm.predict.record import token_lps

    return token_lps(coords, _volume(), PATCH, SPACING)


def test_peak_at_the_lesion_scores_its_side_and_percentile_zero():
    coords = _grid()
    lps = _lps(coords)
    centre = lps[np.argmax(lps[:, 0])] + [0.5, 0.0, 0.0]  # far on the patient's left
    att = np.zeros(len(lps))
    att[np.argmax(lps[:, 0])] = 1.0
    s = score_peak(att, lps, centre[None], half_token_mm=8.0)
    assert s["peak_side"] == "left" and s["distance_pct"] == 0.0 and s["peak_distance_mm"] == pytest.approx(0.5)
    far = np.zeros(len(lps))
    far[np.argmin(lps[:, 0])] = 1.0  # the opposite edge: wrong side, nearly every token is closer
    s = score_peak(far, lps, centre[None], half_token_mm=8.0)
    d_peak = np.linalg.norm(lps[np.argmin(lps[:, 0])] - centre)
    naive = sum(np.linalg.norm(p - centre) < d_peak for p in lps) / len(lps)
    assert s["peak_side"] == "right" and s["distance_pct"] == pytest.approx(naive) and naive > 0.7


def test_localise_controls_and_the_probe_column():
    coords = _grid()
    lps = _lps(coords)
    lesion = np.array([[lps[:, 0].min() + 5.0, lps[:, 1].mean(), lps[:, 2].mean()]])  # patient's right
    att = np.full((len(coords), 2), 1e-3)
    att[np.argmin(np.linalg.norm(lps - lesion, axis=1)), 1] = 1.0  # class 1 looks at the lesion
    entries = [
        {"series_id": "s", "window": "brain", "attention": att, "coords": coords},
        {"series_id": "s", "window": "bone", "attention": np.full((len(coords), 2), 1e-4), "coords": coords},
    ]
    rows = localise(
        Target("st", 1, "dx", "right", lesion), entries, _volume(), PATCH, SPACING, np.random.default_rng(0)
    )
    by = {r["source"]: r for r in rows}
    assert set(by) == {"probe", "oracle", "random"}
    assert by["probe"]["window"] == "brain"  # the entry with most of class 1's mass
    assert by["probe"]["peak_side"] == "right" and by["probe"]["distance_pct"] == 0.0
    assert by["oracle"]["peak_side"] == "right" and by["oracle"]["distance_pct"] == 0.0


def test_random_attention_is_chance_over_many_findings():
    coords = _grid()
    lps = _lps(coords)
    rng = np.random.default_rng(1)
    rows = []
    for i in range(400):
        side = "left" if i % 2 else "right"
        x = lps[:, 0].max() - 10 if side == "left" else lps[:, 0].min() + 10
        t = Target(f"s{i}", 0, "dx", side, np.array([[x, lps[:, 1].mean(), 0.0]]))
        entries = [{"series_id": "s", "window": "w", "attention": np.ones((len(coords), 1)), "coords": coords}]
        rows += [{"modality": "ct", **r} for r in localise(t, entries, _volume(), PATCH, SPACING, rng)]
    summary = summarise(pd.DataFrame(rows), n_boot=500, alpha=0.05, seed=0).set_index("source")
    assert summary.loc["oracle", "side_accuracy"] == 1.0 and summary.loc["oracle", "distance_pct"] == 0.0
    assert 0.4 < summary.loc["random", "side_accuracy"] < 0.6
    assert 0.42 < summary.loc["random", "distance_pct"] < 0.58
    lo, hi = summary.loc["random", ["distance_pct_ci_low", "distance_pct_ci_high"]]
    assert lo < summary.loc["random", "distance_pct"] < hi


def test_summary_interval_against_the_naive_wilson_formula():
    rows = pd.DataFrame(
        {
            "modality": "mri",
            "source": "probe",
            "study_id": [f"s{i}" for i in range(20)],
            "side": "left",
            "peak_side": ["left"] * 14 + ["right"] * 4 + ["midline"] * 2,
            "distance_pct": np.linspace(0, 1, 20),
            "peak_distance_mm": 1.0,
        }
    )
    s = summarise(rows, n_boot=200, alpha=0.05, seed=0).iloc[0]
    n, p, z = 18, 14 / 18, 1.959964
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert s["n_off_midline"] == 18 and s["side_accuracy"] == pytest.approx(p)
    assert (s["side_ci_low"], s["side_ci_high"]) == pytest.approx((centre - half, centre + half), abs=1e-6)


def test_targets_need_a_positive_label_a_reported_side_and_a_truth_centre():
    truths = {
        "a": {"findings": [{"side": "left", "center_lps": [30.0, 0.0, 0.0]}, {"side": None, "center_lps": [0, 0, 0]}]},
        "b": {"findings": [{"side": "right", "center_lps": [-30.0, 0.0, 0.0]}]},
        "c": {"findings": []},
    }
    laterality = {"a": {"dx1": "left", "dx2": "bilateral"}, "b": {"dx1": "left"}, "c": {"dx1": "right"}}
    labels = {"a": np.array([1, 1]), "b": np.array([1, 0]), "c": np.array([1, 0]), "d": np.array([1, 1])}
    got = lesion_targets(truths, laterality, ["dx1", "dx2"], labels)
    assert [(t.study_id, t.diagnosis, t.side) for t in got] == [("a", "dx1", "left")]
    assert got[0].centres.tolist() == [[30.0, 0.0, 0.0]]
