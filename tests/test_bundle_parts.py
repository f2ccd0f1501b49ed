"""Parts of the model bundle and of ``neurovfm predict`` that need no trained run (the end-to-end checks are in
tests/test_predict.py): the manifest and the bundle id, the calibration against the label-efficiency analysis's
Platt scaling, the side of an attention peak under a mirrored volume, and what an input may be."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from neurovfm.bundle.calibration import apply_calibration, fit_calibration
from neurovfm.bundle.manifest import MANIFEST, verify, write_manifest
from neurovfm.predict.record import side_of, token_lps
from neurovfm.predict.sources import classify
from neurovfm.utils.failure import Failed


def _folder(root):
    (root / "probes").mkdir(parents=True)
    (root / "probes" / "probe.pt").write_bytes(b"weights")
    (root / "MODEL_CARD.md").write_text("card, built today\n")
    return root


def test_manifest_lists_every_file_and_the_id_ignores_the_card(tmp_path):
    root = _folder(tmp_path / "b")
    first = write_manifest(root, ("MODEL_CARD.md",))
    assert sorted(first["files"]) == ["MODEL_CARD.md", "probes/probe.pt"]
    assert verify(root)["bundle_id"] == first["bundle_id"]
    (root / "MODEL_CARD.md").write_text("card, built tomorrow\n")  # a rebuild of the same model
    assert write_manifest(root, ("MODEL_CARD.md",))["bundle_id"] == first["bundle_id"]
    (root / "probes" / "probe.pt").write_bytes(b"other weights")  # another model
    with pytest.raises(Failed) as err:
        verify(root)
    assert "sha256" in err.value.detail
    assert write_manifest(root, ("MODEL_CARD.md",))["bundle_id"] != first["bundle_id"]
    (root / MANIFEST).unlink()
    with pytest.raises(Failed) as err:
        verify(root)
    assert err.value.reason == "bad_input_path" and "no manifest" in err.value.detail


def test_calibration_is_the_label_efficiency_platt_fit():
    from neurovfm.analysis.label_efficiency import platt_apply, platt_fit

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(40, 2))
    y[:, 1] = 0  # no validation positive: not fitted, raw probability kept
    logits = rng.normal(size=(40, 2)) + 2.0 * y
    preds = pd.DataFrame({"study_id": [f"s{i}" for i in range(40)], "split": ["val"] * 30 + ["test"] * 10})
    for j, c in enumerate(("a", "b")):
        preds[f"label:{c}"], preds[f"logit:{c}"] = y[:, j], logits[:, j]
    table = fit_calibration(preds, ["a", "b"])
    a, b = platt_fit(logits[:30, 0], y[:30, 0])
    out = apply_calibration(logits, table)
    np.testing.assert_allclose(out[:, 0], platt_apply(logits[:, 0], a, b))
    np.testing.assert_allclose(out[:, 1], 1 / (1 + np.exp(-logits[:, 1])))
    assert table["fitted"].tolist() == [True, False]


def test_attention_side_follows_the_patient_not_the_array():
    """The same token is on the patient's left in a volume stored right-to-left along its columns and on the right
    once the column axis points the other way (LPS x grows to the patient's left)."""
    axial = {"direction_lps": np.eye(3)[:, ::-1].tolist(), "origin_lps": [-100.0, -100.0, 0.0]}
    flipped = {**axial, "direction_lps": (np.eye(3)[:, ::-1] * [1, 1, -1]).tolist(), "origin_lps": [100.0, -100.0, 0.0]}
    coords = np.array([[1, 5, 5], [1, 5, 2], [1, 5, 8]])  # centre, low columns, high columns
    for vol, side in ((axial, "left"), (flipped, "right")):
        lps = token_lps(coords, vol, (4, 16, 16), (4.0, 1.0, 1.0))
        assert side_of(lps[2, 0], lps[:, 0].mean(), 8.0) == side
        assert side_of(lps[0, 0], lps[:, 0].mean(), 8.0) == "midline"


def test_inputs_are_folders_or_nifti_files(tmp_path):
    (tmp_path / "scan.nii.gz").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    kinds = [s.kind for s in classify([tmp_path, tmp_path / "scan.nii.gz"])]
    assert kinds == ["dicom", "nifti"]
    for bad in (tmp_path / "notes.txt", tmp_path / "missing"):
        with pytest.raises(Failed) as err:
            classify([bad])
        assert err.value.reason == "bad_input_path"
    assert json.loads(json.dumps(kinds)) == kinds
