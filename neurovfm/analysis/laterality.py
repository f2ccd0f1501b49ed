"""Laterality check by left-right flipping (paper: Extended Data Fig. 13d).

Protocol. A probe with one logit per side (``left``, ``right``: a lateralised finding on that side of the
patient) scores the test studies whose report gives a side for a positive finding that the diagnostic probe
detects correctly. Every volume of such a study is mirrored across the patient's left-right axis,
re-encoded with the frozen encoder and re-scored. With ``dL = logit_left(flipped) - logit_left(original)``
and ``dR`` likewise, a finding on the left moves to the right under the flip, so an encoder that keeps the
side should give ``dL < 0`` and ``dR > 0`` (and the reverse for a right-sided finding). Reported AUROCs,
all with "true side = left" as the positive class:

* ``auroc_left``  -- of ``-dL`` (the left logit falls when the finding was on the left);
* ``auroc_right`` -- of ``dR`` (the right logit rises when the finding was on the left);
* ``auroc_combined`` -- of ``dR - dL``.

0.5 is a flip-invariant encoder; 1 a perfect one. The flip axis is the array axis whose direction cosine
has the largest component along the patient's L-R axis (LPS x), read from the shard index's
``direction_lps`` (columns = array axes (slice, row, col)); it is never assumed.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from neurovfm.eval.metrics import auroc

SIDES = ("left", "right")


# ----------------------------------------------------------------------------- geometry
def lr_axis(direction_lps) -> int:
    """Array axis (0 slice, 1 row, 2 col) closest to the patient's left-right axis.

    ``direction_lps``: 3 x 3, column k = the LPS unit vector of array axis k; the L-R component of each
    axis is its first row. Ties (a 45 degree obliquity) go to the lowest axis.
    """
    d = np.asarray(direction_lps, dtype=float)
    if d.shape != (3, 3):
        raise ValueError(f"direction_lps must be 3 x 3, got {d.shape}")
    return int(np.argmax(np.abs(d[0])))


def flip_item(item: dict, axis: int) -> dict:
    """A :class:`~neurovfm.store.dataset.VolumeDataset` item mirrored along array ``axis`` (image and token
    mask together; the token grid divides the volume exactly, so token ``t`` maps to ``n - 1 - t``)."""
    image, mask = item["image"], item["token_mask"]
    return {**item, "image": torch.flip(image, dims=[1 + axis]), "token_mask": torch.flip(mask, dims=[axis])}


class FlippedVolumes:
    """A dataset view whose every volume is mirrored across its own L-R axis (:func:`lr_axis`)."""

    def __init__(self, dataset):
        self.dataset = dataset

    @property
    def volumes(self) -> list[dict]:
        return self.dataset.volumes

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        return flip_item(self.dataset[i], lr_axis(self.dataset.volumes[i]["direction_lps"]))


# ----------------------------------------------------------------------------- labels and selection
def side_targets(
    lateral: Mapping[str, Mapping[str, str]], study_ids: Sequence[str], diagnoses: Sequence[str] | None = None
) -> np.ndarray:
    """[n, 2] 0/1 (left, right): a finding of ``diagnoses`` (None: any) on that side; bilateral sets both."""
    out = np.zeros((len(study_ids), 2), dtype=np.float32)
    keep = None if diagnoses is None else set(diagnoses)
    for i, sid in enumerate(study_ids):
        for dx, side in lateral.get(sid, {}).items():
            if keep is not None and dx not in keep:
                continue
            if side in ("left", "bilateral"):
                out[i, 0] = 1
            if side in ("right", "bilateral"):
                out[i, 1] = 1
    return out


def eligible_studies(
    test_rows: pd.DataFrame,
    class_names: Sequence[str],
    thresholds,
    lateral: Mapping[str, Mapping[str, str]],
    diagnoses: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Test studies with a lateralised, correctly detected finding and their true side.

    ``test_rows``: the test rows of a diagnostic ``predictions.csv``; ``thresholds``: the validation
    thresholds per class (on the probability). A finding counts when its class is positive in the label
    table and ``prob >= threshold``. Returns one row per study with a lateralised positive finding:
    ``study_id, side (left/right/""), diagnoses, reason`` where ``reason`` is empty for an eligible study,
    else ``not_detected`` (no lateralised finding detected), ``bilateral`` or ``conflicting_sides``.
    """
    col = {c: j for j, c in enumerate(class_names)}
    thr = np.asarray(thresholds, dtype=float)
    keep = None if diagnoses is None else set(diagnoses)
    rows = []
    for _, r in test_rows.iterrows():
        lat = {
            dx: s
            for dx, s in lateral.get(r["study_id"], {}).items()
            if dx in col and (keep is None or dx in keep) and int(r[f"label:{dx}"]) == 1
        }
        if not lat:
            continue
        hit = {dx: s for dx, s in lat.items() if float(r[f"prob:{dx}"]) >= thr[col[dx]]}
        sides = set(hit.values())
        reason = (
            "not_detected"
            if not hit
            else "bilateral"
            if "bilateral" in sides
            else "conflicting_sides"
            if len(sides) > 1
            else ""
            if sides <= set(SIDES)
            else "unknown_side"
        )
        rows.append(
            {
                "study_id": r["study_id"],
                "side": next(iter(sides)) if reason == "" else "",
                "diagnoses": ";".join(sorted(hit or lat)),
                "reason": reason,
            }
        )
    return pd.DataFrame(rows, columns=["study_id", "side", "diagnoses", "reason"])


# ----------------------------------------------------------------------------- summary
def laterality_aurocs(delta_left, delta_right, side) -> dict:
    """AUROCs of the logit changes against the true side (module docstring); NaN without both sides."""
    dl, dr = np.asarray(delta_left, float), np.asarray(delta_right, float)
    is_left = np.asarray(side) == "left"
    if not (is_left.any() and (~is_left).any()):
        return {"auroc_left": np.nan, "auroc_right": np.nan, "auroc_combined": np.nan}
    return {
        "auroc_left": auroc(-dl, is_left),
        "auroc_right": auroc(dr, is_left),
        "auroc_combined": auroc(dr - dl, is_left),
    }
