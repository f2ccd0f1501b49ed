"""Rule-based extractor on hand-written report snippets (negation, hedging, history, sides, sections)."""

import pytest

from neurovfm.labels.rules import RuleExtractor, positive_labels
from neurovfm.labels.text import split_sections, split_sentences


@pytest.fixture(scope="module")
def rx():
    return RuleExtractor()


def pos(rx, text, modality="CT", indication=""):
    return positive_labels(rx.extract(text, modality, indication))


def test_plain_negation(rx):
    r = rx.extract("No acute intracranial hemorrhage.", "CT")
    assert not r["intracranial_hemorrhage"]["present"]
    assert r["intracranial_hemorrhage"]["status"] == "negated"


def test_negation_scope_ends_at_but(rx):
    r = rx.extract("There is no midline shift but there is a left SDH.", "CT")
    assert r["acute_subdural_hematoma"]["present"] and r["acute_subdural_hematoma"]["side"] == "left"
    assert not r["midline_shift"]["present"]


def test_negation_spans_a_list(rx):
    p = pos(rx, "No intracranial hemorrhage, mass effect, midline shift, or extra-axial collection. No skull fracture.")
    assert p == set()


def test_post_negation_and_resolution(rx):
    p = pos(
        rx,
        "The previously seen intraventricular hemorrhage has resolved. Subarachnoid blood is no longer seen. "
        "Interval resolution of the right subdural hematoma. Pneumocephalus is not seen.",
    )
    assert p == set()


def test_pseudo_negation_keeps_the_finding(rx):
    p = pos(rx, "No significant change in the size of the chronic left subdural hematoma.")
    assert "subacute_chronic_subdural_hematoma" in p


def test_hedging_is_not_positive_but_firm_words_are(rx):
    assert pos(rx, "Subtle hypodensity in the left insula; an early infarct cannot be excluded.") == set()
    assert pos(rx, "Possible small contusion in the right frontal lobe.") == set()
    assert pos(rx, "Questionable nondisplaced fracture of the occipital bone.") == set()
    assert pos(rx, "Findings may represent an evolving infarct versus tumor.", "MR") == set()
    assert "acute_ischemic_stroke" in pos(
        rx, "Loss of gray-white differentiation in the left insula, consistent with acute infarct."
    )
    assert "brain_metastasis" in pos(rx, "Multiple ring-enhancing lesions, most likely metastases.", "MR")
    assert "cerebral_abscess" in pos(rx, "Rim-enhancing lesion in the right parietal lobe, suspicious for abscess.")


def test_history_is_not_current(rx):
    p = pos(rx, "History of subarachnoid hemorrhage. Prior intraparenchymal hemorrhage.", "MR")
    assert "aneurysmal_subarachnoid_hemorrhage" not in p and "traumatic_subarachnoid_hemorrhage" not in p
    assert "intraparenchymal_hemorrhage" not in p and "intracranial_hemorrhage" not in p
    # but surgery and an old infarct are still there
    p = pos(
        rx,
        "Postoperative changes of prior right frontal craniotomy. Encephalomalacia from an old left MCA infarct.",
        "MR",
    )
    assert {
        "craniotomy_craniectomy",
        "postsurgical_changes",
        "encephalomalacia_gliosis",
        "chronic_ischemic_stroke",
    } <= p
    assert "acute_ischemic_stroke" not in p
    # a residual collection after evacuation is current
    assert "subdural_hematoma" in pos(rx, "Residual left subdural hematoma after prior evacuation.", "MR")


def test_indication_section_does_not_count(rx):
    report = (
        "CLINICAL INDICATION: Fall, r/o bleed, hx of SDH.\nCOMPARISON: None.\n"
        "FINDINGS: The ventricles and sulci are normal. No hemorrhage.\nIMPRESSION: No acute intracranial process."
    )
    assert pos(rx, report) == set()


def test_abbreviations_and_british_spelling(rx):
    p = pos(rx, "Small R EDH. Small L frontal IPH with IVH. Trace SAH after the fall.")
    assert {
        "epidural_hematoma",
        "intraparenchymal_hemorrhage",
        "intraventricular_hemorrhage",
        "traumatic_subarachnoid_hemorrhage",
        "intracranial_hemorrhage",
    } <= p
    assert "acute_subdural_hematoma" in pos(rx, "Acute right subdural haematoma.")
    p = pos(rx, "Right frontal VP shunt catheter in place. Left frontal EVD terminates in the third ventricle.")
    assert "catheter" in p
    p = pos(rx, "Numerous periventricular and juxtacortical T2/FLAIR hyperintense lesions, consistent with MS.", "MR")
    assert "multiple_sclerosis" in p


def test_sdh_acuity(rx):
    assert pos(rx, "Hyperdense left convexity subdural collection.") >= {"acute_subdural_hematoma"}
    p = pos(rx, "Chronic right subdural hematoma without acute component.")
    assert "subacute_chronic_subdural_hematoma" in p and "acute_subdural_hematoma" not in p
    p = pos(rx, "Mixed density left subdural hematoma.")
    assert {"acute_subdural_hematoma", "subacute_chronic_subdural_hematoma"} <= p
    p = pos(rx, "Bilateral CSF-density subdural collections, likely hygromas.")
    assert "subdural_hygroma_effusions" in p and "acute_subdural_hematoma" not in p


def test_laterality(rx):
    r = rx.extract(
        "Acute left frontoparietal subdural hematoma with 6 mm rightward midline shift. "
        "Bilateral chronic subdural hematomas.",
        "CT",
    )
    assert r["acute_subdural_hematoma"]["side"] == "left"
    assert r["midline_shift"]["side"] == "right"
    assert r["subacute_chronic_subdural_hematoma"]["side"] == "bilateral"
    r = rx.extract("Parenchymal hemorrhage in the right basal ganglia. Left putaminal hematoma.", "CT")
    assert r["intraparenchymal_hemorrhage"]["side"] == "bilateral"


def test_parents_by_implication(rx):
    r = rx.extract("Large enhancing necrotic mass in the left temporal lobe, consistent with glioblastoma.", "MR")
    assert r["glioma"]["present"] and r["high_grade_glioma"]["present"] and r["brain_tumor"]["present"]
    assert r["glioma"]["side"] == "left"
    r = rx.extract("Small acute epidural hematoma.", "CT")
    assert r["intracranial_hemorrhage"]["present"] and r["intracranial_hemorrhage"]["status"] == "implied"


def test_sites_and_resolvers(rx):
    assert "extra_axial_brain_tumor" in pos(
        rx, "Dural-based enhancing mass along the left convexity, likely meningioma."
    )
    assert "meningioma" in pos(rx, "Dural-based enhancing mass along the left convexity, likely meningioma.", "MR")
    p = pos(
        rx, "Depressed fracture of the right parietal bone. Longitudinal fracture of the left petrous temporal bone."
    )
    assert {"displaced_skull_fracture", "skull_base_fracture"} <= p and "nondisplaced_skull_fracture" not in p
    # the temporal bone without a petrous / otic cue is its squamous (calvarial) part
    assert pos(rx, "Linear non-\ndisplaced fracture of the left temporal bone.") == {"nondisplaced_skull_fracture"}
    # "ICH" with a parenchymal site is an intracerebral hemorrhage
    assert "intraparenchymal_hemorrhage" in pos(rx, "Left basal ganglia ICH, approximately 7 mL.", "MR")
    assert "intraparenchymal_hemorrhage" not in pos(rx, "No ICH.")
    assert "sinusitis" in pos(rx, "Mucosal thickening of the bilateral maxillary sinuses.")
    assert "mastoid_effusion" in pos(rx, "Opacification of the right mastoid air cells.")
    assert pos(rx, "Left periorbital soft tissue edema.") == set()
    assert "cerebral_atrophy" in pos(
        rx, "Prominence of the ventricles and sulci consistent with age-related volume loss."
    )
    assert "ventriculomegaly" not in pos(
        rx, "Prominence of the ventricles and sulci consistent with age-related volume loss."
    )
    p = pos(rx, "The lateral and third ventricles are enlarged out of proportion to the sulci.")
    assert "ventriculomegaly" in p
    p = pos(rx, "Obstructive hydrocephalus due to a mass in the fourth ventricle.", "MR")
    assert {"obstructive_hydrocephalus", "ventriculomegaly", "brain_tumor"} <= p
    assert pos(rx, "Scattered microhemorrhages in the bilateral cerebral hemispheres.", "MR") == set()
    assert "basal_ganglia_calcification" in pos(rx, "Symmetric calcification of the globi pallidi.")
    assert "spinal_degenerative_changes" in pos(rx, "Multilevel cervical spondylosis with disc osteophyte complexes.")


def test_sentences_and_sections():
    sents = split_sentences(
        "Approx. 9 mm left SDH, i.e. small. Dr. Jones was called at 3 p.m. No shift.\n1. Acute SDH.\n2. No fracture."
    )
    assert sents == [
        "Approx. 9 mm left SDH, i.e. small.",
        "Dr. Jones was called at 3 p.m.",
        "No shift.",
        "Acute SDH.",
        "No fracture.",
    ]
    secs = split_sections("EXAM: CT head. HISTORY: headache. FINDINGS: Normal. IMPRESSION: Negative.")
    assert [s.kind for s in secs] == ["technique", "indication", "findings", "impression"]
    assert split_sections("No acute findings.")[0].kind == "findings"
