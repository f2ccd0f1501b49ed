"""Cohort statistics and the free-text reports of the embedded health system (no rendering needed)."""

from __future__ import annotations

import collections
import datetime as dt
import re
from pathlib import Path

import numpy as np
import pytest

from neurovfm.synth import phrases as P
from neurovfm.synth.catalog import CATALOG
from neurovfm.synth.cohort import build_cohort
from neurovfm.synth.reports import relevance_order, write_report
from neurovfm.config import default_config
from neurovfm.synth.export import synth_settings

ROOT = Path(__file__).resolve().parents[1]
CFG = synth_settings(default_config(synth={"n_studies": 300}))  # fixed size: the demo default may change
SEED = 20251128
# Words a reader would look for, per finding kind (written for the test, not taken from the bank).
KIND_WORDS = {
    "sdh_acute": r"subdural|SDH",
    "sdh_chronic": r"subdural|SDH",
    "edh": r"epidural|EDH",
    "ich_parenchymal": r"intraparenchymal|hematoma|ICH|hemorrhage",
    "ivh": r"intraventricular|IVH",
    "ventriculomegaly": r"ventric|hydroceph",
    "atrophy": r"atrophy|volume loss",
    "glioma": r"glioma|glioblastoma",
    "meningioma": r"meningioma",
    "stroke_acute": r"infarct|ischemi",
    "midline_shift": r"shift",
    "skull_fracture_displaced": r"fracture",
    "skull_fracture_nondisplaced": r"fracture",
    "craniotomy": r"craniotomy",
    "resection_cavity": r"cavity",
    "ms_lesions": r"multiple sclerosis|MS\b|demyelinat",
    "chiari": r"Chiari",
    "pneumocephalus": r"pneumocephalus|intracranial air",
    "svid": r"small vessel|microvascular",
    "scalp_hematoma": r"scalp|subgaleal",
    "encephalomalacia": r"encephalomalacia|infarct",
    "bg_calcification": r"calcification",
}
COMMON = {
    "CT": [
        "intracranial_hemorrhage",
        "acute_subdural_hematoma",
        "subacute_chronic_subdural_hematoma",
        "intraparenchymal_hemorrhage",
        "intraventricular_hemorrhage",
        "midline_shift",
        "cerebral_atrophy",
        "small_vessel_ischemic_disease",
        "craniotomy",
        "resection_cavity",
        "encephalomalacia_gliosis",
        "scalp_hemorrhage_hematoma",
        "ventriculomegaly",
        "acute_ischemic_stroke",
    ],
    "MR": [
        "intracranial_hemorrhage",
        "subdural_hematoma",
        "brain_tumor",
        "glioma",
        "cerebral_edema",
        "acute_ischemic_stroke",
        "cerebral_atrophy",
        "small_vessel_ischemic_disease",
        "craniotomy_craniectomy",
        "tumor_resection_cavity",
        "ventriculomegaly",
        "multiple_sclerosis",
        "brain_midline_shift",
    ],
}


@pytest.fixture(scope="module")
def cohort():
    return build_cohort(CFG, SEED)


def _enriched(plan) -> list[dict]:
    """Findings as the renderer returns them (location added), without rendering."""
    out = []
    for f in plan.findings:
        g = dict(f)
        if f["side"] and f["kind"] != "midline_shift":
            g["location"] = f"{f['side']} {P.DEFAULT_LOCATION.get(f['kind'], 'frontal lobe')}"
        g["volume_ml"] = 12.5
        out.append(g)
    return out


@pytest.fixture(scope="module")
def reports(cohort):
    return [(p, write_report(p, _enriched(p), np.random.default_rng([SEED, p.index]))) for p in cohort]


def test_cohort_deterministic_and_sized(cohort):
    again = build_cohort(CFG, SEED)
    assert [(p.patient.mrn, p.study_date, p.modality, p.findings) for p in cohort] == [
        (p.patient.mrn, p.study_date, p.modality, p.findings) for p in again
    ]
    assert len(cohort) == 300
    assert collections.Counter(p.modality for p in cohort) == {"CT": 150, "MR": 150}
    recent = np.mean([p.study_date >= dt.date(2023, 6, 1) for p in cohort])
    assert 0.12 <= recent <= 0.22
    assert len({p.accession for p in cohort}) == 300
    per_patient = collections.Counter(p.patient.index for p in cohort)
    assert 1 <= min(per_patient.values()) and max(per_patient.values()) <= 3 and len(per_patient) < 300
    assert any(p.age >= 90 for p in cohort) and any(p.age < 18 for p in cohort)
    assert {p.vendor for p in cohort} == {"GE", "Siemens", "Philips", "Canon"}
    assert {p.field_strength for p in cohort if p.modality == "MR"} == {1.5, 3.0}
    assert "Unknown" in {p.patient.ethnicity for p in cohort}


def test_prevalence_and_clinical_logic(cohort):
    counts = collections.Counter((p.modality, lab) for p in cohort for lab in p.labels)
    for modality, labels in COMMON.items():
        for lab in labels:
            assert counts[(modality, lab)] >= 12, (modality, lab, counts[(modality, lab)])
    normal = np.mean([not p.findings for p in cohort])
    assert 0.2 <= normal <= 0.5
    for p in cohort:
        kinds = {f["kind"]: f for f in p.findings}
        for f in p.findings:  # only kinds that have a label in this modality are present
            assert CATALOG[f["kind"]].ct_labels if p.modality == "CT" else CATALOG[f["kind"]].mri_labels
        if "midline_shift" in kinds:
            masses = [
                f
                for f in p.findings
                if f["kind"] in ("sdh_acute", "sdh_chronic", "edh", "ich_parenchymal", "glioma")
                and f["side"] in ("left", "right")
            ]
            assert any(m["side"] != kinds["midline_shift"]["side"] for m in masses)  # shift away from a mass
        if "ms_lesions" in kinds and p.scenario != "follow_up":
            assert 16 <= p.age <= 60
        if "stroke_acute" in kinds and p.scenario != "follow_up":
            weak = "left" if kinds["stroke_acute"]["side"] == "right" else "right"
            assert weak in p.indication.lower()
    assert any(p.resolved for p in cohort)


def test_reports_mention_each_present_finding_with_side(reports):
    for plan, rep in reports:
        text = rep.text
        for f in plan.findings:
            assert re.search(KIND_WORDS[f["kind"]], text, re.I), (f, text)
            if f["side"]:
                assert f["side"] in text.lower(), (f, text)
        assert len(rep.key_findings) == len(plan.findings)


def test_key_findings_ordered_urgent_first(reports):
    for plan, rep in reports:
        order = relevance_order(plan.findings)
        urgent = [CATALOG[f["kind"]].triage == "urgent" for f in order]
        assert urgent == sorted(urgent, reverse=True)
        if not plan.findings:
            assert rep.key_findings == []
        for sentence in rep.key_findings:
            assert not sentence.lower().startswith(("no ", "normal", "unremarkable"))


def test_negatives_never_deny_present_findings(reports):
    n_neg = n_unc = 0
    for plan, rep in reports:
        present = {f["kind"] for f in plan.findings}
        for text, kinds, _ in P.NEGATIVES:
            if text in rep.text:
                n_neg += 1
                assert not (kinds & present), (text, present)
        for text, kinds, _ in P.UNCERTAIN:
            stem = text.split("{")[0]
            if stem in rep.text:
                n_unc += 1
                assert not (kinds & present), (text, present)
    assert n_neg > 300 and n_unc > 30


def test_reports_are_varied_and_carry_history_and_phi(reports):
    texts = [r.text for _, r in reports]
    assert len({t.split("\n")[0] for t in texts}) > 30
    assert sum("FINDINGS:" in t for t in texts) and sum("Findings:" in t for t in texts)
    assert sum(bool(re.search(r"^\s*2\. ", t, re.M)) for t in texts) > 10  # numbered impressions
    assert sum(t.startswith("Patient:") for t in texts) >= 10
    hedged = sum(any(h in t for h in P.HEDGES) for t in texts)
    assert hedged > 50
    resolved = [(p, r) for p, r in reports if p.resolved]
    assert resolved and all(re.search(r"resol|no longer|no residual", r.text, re.I) for _, r in resolved)
    for p, r in reports:
        if "craniotomy" not in {f["kind"] for f in p.findings}:
            assert "Prior left craniotomy" not in r.text and "Prior right craniotomy" not in r.text
        if p.phi_in_report:
            assert p.patient.mrn in r.text
