"""Writer B (the unseen report bank) and the two-bank generalisation harness."""

import re

import numpy as np
import pytest

from neurovfm.config import default_config
from neurovfm.labels.generalisation import cohort_cases, main, score_cases, truth_sides
from neurovfm.synth import phrases as A
from neurovfm.synth import phrases_unseen as B
from neurovfm.synth.cohort import build_cohort
from neurovfm.synth.export import synth_settings
from neurovfm.synth.reports_unseen import STYLES, StudyText, from_plan, from_truth, write_unseen_report

SEED = 7


@pytest.fixture(scope="module")
def plans():
    return build_cohort(synth_settings(default_config(synth={"n_studies": 120})), SEED)


def test_deterministic_and_all_styles(plans):
    reps = [write_unseen_report(from_plan(p), np.random.default_rng([SEED, p.index])) for p in plans]
    again = [write_unseen_report(from_plan(p), np.random.default_rng([SEED, p.index])) for p in plans]
    assert [r.text for r in reps] == [r.text for r in again]
    assert {r.style for r in reps} == set(STYLES)
    assert sum(bool(r.distractor_classes) for r in reps) > 30
    assert any(re.search(r"^\s*2\. ", r.text, re.M) for r in reps)  # numbered impressions
    assert any(r.text.count("ADDENDUM") for r in reps)


def test_every_present_finding_is_stated_with_its_side(plans):
    for p in plans:
        text = write_unseen_report(from_plan(p), np.random.default_rng([SEED, p.index])).text.lower()
        for f in p.findings:
            if f.get("side") in ("left", "right"):
                assert f["side"] in text, (f, text)


def test_distractors_and_negatives_never_contradict_present_findings(plans):
    for p in plans:
        present = {f["kind"] for f in p.findings}
        text = write_unseen_report(from_plan(p), np.random.default_rng([SEED, p.index])).text
        for row in B.NEGATIVES + [(d[0], d[1], d[2]) for d in B.DISTRACTORS]:
            if row[0] in text:
                assert not (row[1] & present), (row[0], present)


def test_bank_b_does_not_reuse_bank_a_sentences():
    a = {s for v in A.SENT.values() for t in v for s in t.split("|")} | set(A.KEY.values())
    a |= {t for t, *_ in A.NEGATIVES} | {t for t, *_ in A.UNCERTAIN} | {t for t, _ in A.FILLER}
    b = {s for v in B.PRESENT.values() for t in v for s in t.split("|")} | set(B.TELEGRAPHIC.values())
    b |= {t for t, *_ in B.NEGATIVES} | {t for t, *_ in B.DISTRACTORS} | {t for t, _ in B.FILLER}
    assert not (a & b)


def test_from_truth_record():
    rec = {
        "modality": "MRI",
        "findings": [{"kind": "glioma", "side": "left", "size": "large"}],
        "resolved": [],
        "indication": "Seizure.",
    }
    st = from_truth(rec)
    assert st == StudyText("MR", [{"kind": "glioma", "side": "left", "size": "large"}], [], "Seizure.", False)
    text = write_unseen_report(st, np.random.default_rng(0)).text
    assert "left" in text.lower() and "Seizure." in text


def test_truth_sides_combines_and_skips_unsided_labels():
    sides = truth_sides(
        "CT",
        [
            {"kind": "sdh_acute", "side": "left"},
            {"kind": "ich_parenchymal", "side": "right"},
            {"kind": "midline_shift", "side": "right"},
        ],
    )
    assert sides["acute_subdural_hematoma"] == "left" and sides["intracranial_hemorrhage"] == "bilateral"
    assert sides["midline_shift"] == "right"
    assert "intracranial_hemorrhage" not in truth_sides(
        "CT", [{"kind": "sdh_acute", "side": "left"}, {"kind": "ivh", "side": None}]
    )


def test_generalisation_table_has_both_banks(tmp_path, capsys):
    table = score_cases(cohort_cases(40, SEED))
    assert set(table.bank) == {"development", "unseen"} and set(table.modality) == {"CT", "MR"}
    assert ((table.macro_f1 > 0.8) & (table.triage_accuracy > 0.8)).all()
    assert (table.reports_per_s_per_core > 0).all()
    assert main(["--n", "0"]) == 2 and "at least 1" in capsys.readouterr().err
