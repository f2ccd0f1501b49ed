"""Key findings, the run_labels orchestration and the extractor scoring (checked against scikit-learn)."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, precision_recall_fscore_support

from neurovfm.ingest.deid import keyed_hash
from neurovfm.labels.evaluate import evaluate_extractor, score_matrix
from neurovfm.labels.findings import FindingsExtractor
from neurovfm.labels.ontology import load_ontology
from neurovfm.labels.run import run_labels
from neurovfm.config import default_config

CT_REPORT = """EXAM: CT HEAD WITHOUT CONTRAST
CLINICAL HISTORY: Fall on anticoagulation, r/o bleed.
COMPARISON: CT head 03/02/2021.
FINDINGS: Compared to the prior study, there is a new acute left frontoparietal subdural hematoma measuring up to
9 mm, with 5 mm rightward midline shift. The ventricles are normal in size. No skull fracture. Measures 3.2 x 2.1 cm.
Mild chronic small vessel ischemic changes. The mastoid air cells are clear. Left frontal scalp hematoma.
IMPRESSION:
1. Acute left subdural hematoma with 5 mm rightward midline shift.
2. No acute infarct.
3. Chronic small vessel ischemic disease, unchanged from prior."""

MR_REPORT = (
    "FINDINGS\nNo acute infarct. Multiple periventricular T2/FLAIR hyperintense lesions, consistent with "
    "multiple sclerosis. The ventricles are normal.\n\nIMPRESSION\nDemyelinating disease.\n"
)


def test_findings_filter_dedup_and_order():
    items = FindingsExtractor().extract(CT_REPORT, "CT")
    assert items[0].startswith("There is a new acute left frontoparietal subdural hematoma")  # urgent first
    assert "prior" not in items[0].lower()  # comparison phrase removed
    assert not any("normal" in i.lower() or i.lower().startswith("no ") for i in items)
    assert not any(i.startswith("Measures") for i in items)  # bare measurement removed
    assert "Left frontal scalp hematoma." in items and "Mild chronic small vessel ischemic changes." in items
    assert not any(i.startswith("Acute left subdural hematoma") for i in items)  # impression restates findings
    assert sum("small vessel" in i for i in items) == 1
    items = FindingsExtractor().extract(
        "FINDINGS: Questionable subtle hypodensity in the left insula, likely artifact. "
        "A few nonspecific punctate FLAIR foci. Enhancing nodule in the left cerebellopontine "
        "angle cistern.",
        "MR",
    )
    assert items == ["Enhancing nodule in the left cerebellopontine angle cistern."]  # unknown to the lexicon, kept
    assert (
        FindingsExtractor().extract("FINDINGS: Normal study. IMPRESSION: No acute intracranial abnormality.", "MR")
        == []
    )


@pytest.fixture()
def tiny_run(tmp_path):
    key = b"test-key"
    uids = {"ct": "1.2.3.1", "mr": "1.2.3.2", "empty": "1.2.3.3", "gone": "1.2.3.4"}
    sid = {k: keyed_hash(v, key, "study") for k, v in uids.items()}
    pd.DataFrame(
        {
            "study_id": [sid["ct"], sid["mr"], sid["empty"]],
            "modality": ["CT", "MR", "CT"],
            "split": ["train", "test", "val"],
        }
    ).to_csv(tmp_path / "studies.csv", index=False)
    lines = [
        {"study_id": sid["ct"], "modality": "CT", "indication": "fall", "report_text": CT_REPORT},
        {"study_id": sid["mr"], "modality": "MR", "indication": "", "report_text": MR_REPORT},
        {"study_id": sid["empty"], "modality": "CT", "indication": "", "report_text": "  "},
        {"study_id": sid["gone"], "modality": "CT", "indication": "", "report_text": "Acute SDH."},
    ]
    with open(tmp_path / "reports.jsonl", "w") as fh:
        for ln in lines:
            fh.write(json.dumps(ln) + "\n")
        fh.write("{not json\n")
    truth = tmp_path / "truth"
    truth.mkdir()
    for name, mod, labels in (
        (
            "ct",
            "CT",
            [
                "acute_subdural_hematoma",
                "intracranial_hemorrhage",
                "midline_shift",
                "brain_mass_effect",
                "small_vessel_ischemic_disease",
                "epidural_hematoma",
            ],
        ),
        ("mr", "MR", ["multiple_sclerosis"]),
    ):
        (truth / f"{uids[name]}.json").write_text(
            json.dumps({"study_instance_uid": uids[name], "modality": mod, "labels": labels, "report_present": True})
        )
    summary = run_labels(
        tmp_path / "reports.jsonl",
        tmp_path / "studies.csv",
        tmp_path / "labels",
        default_config(),
        tmp_path / "private",
    )
    return tmp_path, sid, key, summary


def test_run_labels_tables(tiny_run):
    tmp, sid, _, summary = tiny_run
    ct = pd.read_csv(tmp / "labels" / "ct.csv", dtype={"study_id": str})
    mri = pd.read_csv(tmp / "labels" / "mri.csv", dtype={"study_id": str})
    assert list(ct.columns) == ["study_id", "split"] + load_ontology("CT").names
    assert list(mri.columns) == ["study_id", "split"] + load_ontology("MR").names
    assert ct["study_id"].tolist() == [sid["ct"]] and mri["study_id"].tolist() == [sid["mr"]]
    row = ct.iloc[0]
    assert row["split"] == "train"
    positives = {c for c in ct.columns[2:] if row[c] == 1}
    assert positives == {
        "acute_subdural_hematoma",
        "intracranial_hemorrhage",
        "midline_shift",
        "brain_mass_effect",
        "small_vessel_ischemic_disease",
        "scalp_hemorrhage_hematoma",
    }
    errors = pd.read_csv(tmp / "labels" / "extract_errors.csv")
    assert sorted(errors["reason"]) == ["bad_json_line", "empty_report", "study_not_ingested"]
    assert summary["n_ct"] == 1 and summary["n_mri"] == 1
    findings = [json.loads(x) for x in (tmp / "labels" / "findings.jsonl").read_text().splitlines()]
    ct_f = next(f for f in findings if f["study_id"] == sid["ct"])
    assert ct_f["laterality"]["acute_subdural_hematoma"] == "left" and ct_f["laterality"]["midline_shift"] == "right"
    assert ct_f["split"] == "train" and ct_f["modality"] == "CT" and ct_f["findings"]


def test_evaluate_extractor(tiny_run):
    tmp, sid, key, _ = tiny_run
    df = evaluate_extractor(tmp / "labels", tmp / "truth", tmp / "studies.csv", key, tmp / "eval.csv")
    assert set(df["bank"]) == {"development", "unseen"}
    assert (df.groupby("bank").size() == df.groupby("bank").size().iloc[0]).all()  # same rows for both banks
    ct = df[(df["modality"] == "CT") & (df["bank"] == "development")].set_index("label")
    assert ct.loc["acute_subdural_hematoma", "tp"] == 1
    assert ct.loc["epidural_hematoma", "fn"] == 1 and ct.loc["scalp_hemorrhage_hematoma", "fp"] == 1
    macro = ct.loc["macro"]
    assert macro["f1"] == pytest.approx((5 * 1.0 + 0.0) / 6)  # 6 labels with support; EDH missed
    assert (tmp / "eval.csv").is_file()


def test_score_matrix_matches_sklearn():
    rng = np.random.default_rng(0)
    truth = rng.random((60, 7)) < 0.3
    pred = truth ^ (rng.random((60, 7)) < 0.15)
    truth[:, 6] = False  # a label without support: excluded from the macro
    df = score_matrix(truth, pred, [f"l{i}" for i in range(7)], "CT").set_index("label")
    p, r, f, s = precision_recall_fscore_support(truth, pred, zero_division=0)
    np.testing.assert_allclose(df.loc[[f"l{i}" for i in range(6)], "f1"], f[:6])
    np.testing.assert_allclose(df.loc[[f"l{i}" for i in range(6)], "recall"], r[:6])
    np.testing.assert_array_equal(df.loc[[f"l{i}" for i in range(7)], "support"], s)
    assert df.loc["macro", "f1"] == pytest.approx(f[:6].mean())
    assert df.loc["micro", "f1"] == pytest.approx(f1_score(truth, pred, average="micro"))


def test_unseen_bank_is_written_from_the_truth_findings(tmp_path):
    key = b"k"
    uid = "1.2.9.1"
    sid = keyed_hash(uid, key, "study")
    pd.DataFrame({"study_id": [sid], "modality": ["CT"], "split": ["test"]}).to_csv(
        tmp_path / "studies.csv", index=False
    )
    (tmp_path / "truth").mkdir()
    rec = {
        "study_instance_uid": uid,
        "modality": "CT",
        "report_present": True,
        "indication": "Fall.",
        "labels": ["acute_subdural_hematoma", "intracranial_hemorrhage", "midline_shift", "brain_mass_effect"],
        "findings": [
            {"kind": "sdh_acute", "side": "left", "size": "large"},
            {"kind": "midline_shift", "side": "right", "size": "small"},
        ],
        "resolved": [],
    }
    (tmp_path / "truth" / f"{uid}.json").write_text(json.dumps(rec))
    (tmp_path / "labels").mkdir()  # no development predictions: every label is missed there
    df = evaluate_extractor(tmp_path / "labels", tmp_path / "truth", tmp_path / "studies.csv", key)
    ct = df[df["modality"] == "CT"].set_index(["bank", "label"])
    assert ct.loc[("development", "acute_subdural_hematoma"), "fn"] == 1
    assert ct.loc[("unseen", "acute_subdural_hematoma"), "tp"] == 1
    assert ct.loc[("unseen", "micro"), "fn"] == 0 and ct.loc[("unseen", "micro"), "n_reports"] == 1
    again = evaluate_extractor(tmp_path / "labels", tmp_path / "truth", tmp_path / "studies.csv", key)
    pd.testing.assert_frame_equal(df, again)  # writer B is seeded by the study: the same report every run
    assert set(
        evaluate_extractor(tmp_path / "labels", tmp_path / "truth", tmp_path / "studies.csv", key, unseen=False)["bank"]
    ) == {"development"}
