"""Ontology: the paper's names and counts, implication edges, consistency with the synthetic catalog."""

import re
from pathlib import Path

import pytest

from neurovfm.labels.lexicon import load_concepts
from neurovfm.labels.ontology import CATEGORIES, load_ontology
from neurovfm.labels.resolvers import RESOLVERS
from neurovfm.synth.catalog import CATALOG

PAPER = Path("/work/shared/paper/neurovfm-paper.txt")


def test_counts_and_uniqueness():
    ct, mr = load_ontology("CT"), load_ontology("MRI")
    assert len(ct.names) == 82 and len(set(ct.names)) == 82
    assert len(mr.names) == 74 and len(set(mr.names)) == 74
    for onto in (ct, mr):
        for d in onto.diagnoses:
            assert d.category in CATEGORIES and len(d.guidance) > 10


@pytest.mark.skipif(not PAPER.is_file(), reason="paper text not available")
def test_names_and_order_match_the_paper():
    text = PAPER.read_text(encoding="utf-8")

    def listed(marker):
        line = next(ln for ln in text.splitlines() if marker in ln)
        body = re.sub(r"\([^)]*\)", "", line.split(marker, 1)[1])
        return [x.strip().rstrip(".") for x in body.split(";")]

    assert load_ontology("MR").names == listed("The full list of MRI diagnoses is:")
    assert load_ontology("CT").names == listed("The full list of CT diagnoses is here:")


def test_required_implications():
    ct, mr = load_ontology("CT"), load_ontology("MR")
    for sub in (
        "acute_subdural_hematoma",
        "subacute_chronic_subdural_hematoma",
        "epidural_hematoma",
        "intraparenchymal_hemorrhage",
        "intraventricular_hemorrhage",
        "aneurysmal_subarachnoid_hemorrhage",
        "traumatic_subarachnoid_hemorrhage",
    ):
        assert "intracranial_hemorrhage" in ct.ancestors(sub)
    for sub in (
        "subdural_hematoma",
        "epidural_hematoma",
        "intraparenchymal_hemorrhage",
        "intraventricular_hemorrhage",
        "aneurysmal_subarachnoid_hemorrhage",
        "traumatic_subarachnoid_hemorrhage",
    ):
        assert "intracranial_hemorrhage" in mr.ancestors(sub)
    assert "brain_mass_effect" in ct.ancestors("midline_shift")
    assert "brain_mass_effect" in mr.ancestors("brain_midline_shift")
    assert "brain_mass_effect" in mr.ancestors("brain_herniation")
    for t in (
        "glioma",
        "high_grade_glioma",
        "low_grade_glioma",
        "brainstem_glioma",
        "brain_metastasis",
        "meningioma",
        "lymphoma",
        "schwannoma",
        "pineal_tumor",
        "intraventricular_tumor",
        "pediatric_posterior_fossa_tumor",
        "pituitary_tumor",
        "craniopharyngioma",
    ):
        assert "brain_tumor" in mr.ancestors(t)
    for g in ("high_grade_glioma", "low_grade_glioma", "brainstem_glioma"):
        assert "glioma" in mr.ancestors(g)
    for s in ("craniotomy", "cranioplasty_implant", "burr_hole", "resection_cavity"):
        assert ct.ancestors(s) == {"postsurgical_changes"}
    for s in ("craniotomy_craniectomy", "tumor_resection_cavity"):
        assert mr.ancestors(s) == {"postsurgical_changes"}
    assert "chronic_ischemic_stroke" not in mr.ancestors("encephalomalacia_gliosis")
    assert mr.close({"high_grade_glioma"}) == {"high_grade_glioma", "glioma", "brain_tumor"}


def test_synthetic_catalog_uses_ontology_names_closed_under_implication():
    for kind in CATALOG.values():
        for modality, labels in (("CT", kind.ct_labels), ("MR", kind.mri_labels)):
            onto = load_ontology(modality)
            assert all(lab in onto for lab in labels), (kind.key, modality, labels)
            assert onto.close(labels) == set(labels), (kind.key, modality)


def test_lexicon_targets_are_ontology_names():
    concepts = load_concepts(frozenset(RESOLVERS))  # validates every label and resolver on load
    assert len(concepts) > 80
