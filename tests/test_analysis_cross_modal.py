"""Cross-modal transfer: the configured CT -> MRI pairs, delta AUROC against a bootstrap loop, verdicts."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from neurovfm.analysis import cross_modal as cm
from neurovfm.config import default_config
from neurovfm.eval.bootstrap import bootstrap_indices
from neurovfm.labels.ontology import load_ontology


def test_configured_pairs_name_real_diagnoses():
    pairs = cm.validate_pairs(default_config()["analysis"]["cross_modal"]["pairs"])
    ct, mr = load_ontology("CT"), load_ontology("MR")
    # every diagnosis spelled identically in both ontologies is paired with itself
    for name in set(ct.names) & set(mr.names):
        assert pairs.get(name) == name
    assert pairs["midline_shift"] == "brain_midline_shift"
    src, tgt = cm.transfer_classes(pairs, "MR")
    assert src[tgt.index("midline_shift")] == "brain_midline_shift"
    with pytest.raises(KeyError, match="not_a_dx"):
        cm.validate_pairs({"not_a_dx": "ventriculomegaly"})


@pytest.mark.parametrize(
    "lo, hi, expect",
    [
        (-0.03, 0.04, "equivalent"),
        (-0.2, -0.07, "inferior"),
        (0.06, 0.1, "superior"),
        (-0.08, 0.01, "inconclusive"),
        (np.nan, 0.1, "not_evaluable"),
    ],
)
def test_verdict(lo, hi, expect):
    assert cm.verdict(lo, hi, 0.05) == expect


def test_deltas_against_loop():
    rng = np.random.default_rng(0)
    n = 150
    y = (rng.random((n, 3)) < [0.3, 0.25, 0.02]).astype(int)
    native = rng.normal(size=(n, 3)) + 2.0 * y
    transferred = native + rng.normal(0, 0.3, size=(n, 3))
    transferred[:, 1] = rng.normal(size=n) + 0.3 * y[:, 1]  # a transfer that fails
    df = cm.cross_modal_deltas(
        native,
        transferred,
        y,
        ["ich", "edema", "rare"],
        source="CT",
        target="MR",
        source_names=["ich_ct", "edema_ct", "rare_ct"],
        n_boot=80,
        seed=3,
        min_pos=10,
    )
    assert list(df["source"]) == ["CT"] * 3 and list(df["target"]) == ["MR"] * 3
    assert df.loc[2, "verdict"] == "not_evaluable"
    assert df.loc[1, "verdict"] == "inferior"
    for j in (0, 1):
        loop = [
            roc_auc_score(y[i, j], transferred[i, j]) - roc_auc_score(y[i, j], native[i, j])
            for i in bootstrap_indices(n, 80, 3)
        ]
        lo, hi = np.percentile(loop, [2.5, 97.5])
        assert df.loc[j, "delta_lo"] == pytest.approx(lo) and df.loc[j, "delta_hi"] == pytest.approx(hi)
        assert df.loc[j, "delta"] == pytest.approx(
            roc_auc_score(y[:, j], transferred[:, j]) - roc_auc_score(y[:, j], native[:, j])
        )
