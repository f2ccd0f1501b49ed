"""Cross-modal transfer of diagnostic probes (paper: Fig. 3c, Extended Data Figs 8c and 10c).

For a diagnosis that both ontologies name (the CT -> MRI mapping in config ``analysis.cross_modal.pairs``),
the probe trained on the *source* modality scores the *target* modality's test studies zero-shot and is
compared with the target modality's own (native) probe on the same studies:
``delta = AUROC(transferred) - AUROC(native)``, with a paired study-level bootstrap CI (both scored on
the same resamples, ``eval.paired_auroc_difference``). The verdict compares the CI with the a-priori
equivalence band (paper: +/- 0.05 AUROC):

* ``equivalent``   -- the whole CI inside [-band, +band];
* ``inferior``     -- the whole CI below -band (the transferred probe is materially worse);
* ``superior``     -- the whole CI above +band;
* ``inconclusive`` -- anything else (the CI crosses a band edge);
* ``not_evaluable`` -- too few positives or negatives in the target test set.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from neurovfm.eval.bootstrap import paired_auroc_difference
from neurovfm.labels.ontology import load_ontology

_MODALITY = {"CT": "CT", "MR": "MR", "MRI": "MR"}


def validate_pairs(pairs: Mapping[str, str]) -> dict[str, str]:
    """Check a CT name -> MRI name mapping against the two ontologies; returns it as a plain dict."""
    ct, mr = load_ontology("CT"), load_ontology("MR")
    bad = [f"CT {c!r}" for c in pairs if c not in ct] + [f"MRI {m!r}" for m in pairs.values() if m not in mr]
    if bad:
        raise KeyError(f"cross-modal pairs name diagnoses missing from the ontologies: {', '.join(bad)}")
    if len(set(pairs.values())) != len(pairs):
        raise ValueError("cross-modal pairs map two CT diagnoses to the same MRI diagnosis")
    return dict(pairs)


def transfer_classes(pairs: Mapping[str, str], source: str) -> tuple[list[str], list[str]]:
    """(source names, target names) of the shared diagnoses for a transfer from ``source`` (CT or MR)."""
    src = _MODALITY[source.upper()]
    ct_names, mr_names = list(pairs.keys()), list(pairs.values())
    return (ct_names, mr_names) if src == "CT" else (mr_names, ct_names)


def verdict(lo: float, hi: float, band: float) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "not_evaluable"
    if lo >= -band and hi <= band:
        return "equivalent"
    if hi < -band:
        return "inferior"
    if lo > band:
        return "superior"
    return "inconclusive"


def cross_modal_deltas(
    native_scores,
    transferred_scores,
    labels,
    class_names: Sequence[str],
    source: str,
    target: str,
    source_names: Sequence[str] | None = None,
    band: float = 0.05,
    n_boot: int = 10_000,
    seed: int = 0,
    min_pos: int = 10,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Delta AUROC (transferred - native) per shared diagnosis on the target modality's test studies.

    ``native_scores`` / ``transferred_scores`` / ``labels``: [n_target_test, n_shared], columns in the
    order of ``class_names`` (target-modality names; ``source_names`` the matching source names, for
    the table). The transferred column j is the source probe's logit for the source diagnosis paired
    with target diagnosis j. Columns: ``source, target, source_label, label, n_pos, n_neg, status,
    auroc_transferred, auroc_native, delta, delta_lo, delta_hi, band, verdict``.
    """
    df = paired_auroc_difference(
        transferred_scores,
        native_scores,
        labels,
        n_boot=n_boot,
        seed=seed,
        class_names=list(class_names),
        min_pos=min_pos,
        alpha=alpha,
    )
    df = df.rename(columns={"auroc_a": "auroc_transferred", "auroc_b": "auroc_native"})
    df.insert(0, "source_label", list(source_names) if source_names is not None else list(class_names))
    df.insert(0, "target", _MODALITY[target.upper()])
    df.insert(0, "source", _MODALITY[source.upper()])
    df["band"] = band
    df["verdict"] = [
        verdict(lo, hi, band) if st == "ok" else "not_evaluable"
        for lo, hi, st in zip(df["delta_lo"], df["delta_hi"], df["status"])
    ]
    return df
