"""Findings that the embedded health system can render, and what each means in the paper's ontology.

A *finding kind* is what the renderer draws (one lesion type). Each kind maps to the diagnosis
names of the CT and of the MRI ontology (spelled as the paper spells them), including the
parent diagnoses the ontology implies (any hemorrhage subtype -> ``intracranial_hemorrhage``),
so the ground truth of a study is just the union of the labels of its findings.

This table is the contract between ``synth.phantom`` (rendering), ``synth.cohort`` (which
patients get what, with clinical co-occurrence) and ``synth.reports`` (what the radiologist
writes). The pipeline under test (ingest, labels, models) never imports it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FindingKind:
    key: str
    ct_labels: tuple[str, ...]  # empty: not visible / not in the CT ontology
    mri_labels: tuple[str, ...]  # empty: not in the MRI ontology
    lateralised: bool  # rendered on one side (left/right); some kinds allow bilateral
    triage: str  # acuity this finding alone gives: routine | urgent
    category: str  # broad clinical group, used for report ordering and figures
    description: str


_KINDS = [
    FindingKind(
        "ich_parenchymal",
        ("intraparenchymal_hemorrhage", "intracranial_hemorrhage"),
        ("intraparenchymal_hemorrhage", "intracranial_hemorrhage"),
        True,
        "urgent",
        "hemorrhagic",
        "hyperdense/blood-signal parenchymal hematoma (basal ganglia or lobar) with a rim of edema",
    ),
    FindingKind(
        "sdh_acute",
        ("acute_subdural_hematoma", "intracranial_hemorrhage"),
        ("subdural_hematoma", "intracranial_hemorrhage"),
        True,
        "urgent",
        "traumatic",
        "crescentic extra-axial collection along one convexity, hyperdense on CT",
    ),
    FindingKind(
        "sdh_chronic",
        ("subacute_chronic_subdural_hematoma", "intracranial_hemorrhage"),
        ("subdural_hematoma", "intracranial_hemorrhage"),
        True,
        "routine",
        "traumatic",
        "crescentic extra-axial collection, iso- to hypodense on CT",
    ),
    FindingKind(
        "edh",
        ("epidural_hematoma", "intracranial_hemorrhage"),
        ("epidural_hematoma", "intracranial_hemorrhage"),
        True,
        "urgent",
        "traumatic",
        "biconvex extra-axial hematoma under the inner table",
    ),
    FindingKind(
        "ivh",
        ("intraventricular_hemorrhage", "intracranial_hemorrhage"),
        ("intraventricular_hemorrhage", "intracranial_hemorrhage"),
        False,
        "urgent",
        "hemorrhagic",
        "blood layering in the occipital horns of the lateral ventricles",
    ),
    FindingKind(
        "ventriculomegaly",
        ("ventriculomegaly",),
        ("ventriculomegaly",),
        False,
        "routine",
        "csf",
        "enlarged lateral and third ventricles out of proportion to the sulci",
    ),
    FindingKind(
        "atrophy",
        ("cerebral_atrophy",),
        ("cerebral_atrophy",),
        False,
        "routine",
        "degenerative",
        "widened sulci and ex vacuo ventricular enlargement",
    ),
    FindingKind(
        "glioma",
        ("intra_axial_brain_tumor", "cerebral_edema"),
        ("brain_tumor", "glioma", "high_grade_glioma", "cerebral_edema"),
        True,
        "urgent",
        "neoplastic",
        "intra-axial mass with necrotic core, rim enhancement and surrounding vasogenic edema",
    ),
    FindingKind(
        "meningioma",
        ("extra_axial_brain_tumor",),
        ("brain_tumor", "meningioma"),
        True,
        "routine",
        "neoplastic",
        "dural-based homogeneously enhancing extra-axial mass",
    ),
    FindingKind(
        "stroke_acute",
        ("acute_ischemic_stroke",),
        ("acute_ischemic_stroke",),
        True,
        "urgent",
        "ischemic",
        "wedge of cortex and white matter in an MCA territory, bright on DWI, hypodense on CT",
    ),
    FindingKind(
        "midline_shift",
        ("midline_shift", "brain_mass_effect"),
        ("brain_midline_shift", "brain_mass_effect"),
        True,
        "urgent",
        "mass_effect",
        "shift of the midline away from a large lesion (side = direction the midline moves)",
    ),
    FindingKind(
        "skull_fracture_displaced",
        ("displaced_skull_fracture",),
        (),
        True,
        "urgent",
        "traumatic",
        "depressed fragment of the calvarium",
    ),
    FindingKind(
        "skull_fracture_nondisplaced",
        ("nondisplaced_skull_fracture",),
        (),
        True,
        "routine",
        "traumatic",
        "thin linear lucency through the calvarium",
    ),
    FindingKind(
        "craniotomy",
        ("craniotomy", "postsurgical_changes"),
        ("craniotomy_craniectomy", "postsurgical_changes"),
        True,
        "routine",
        "postoperative",
        "bone flap outlined by cut lines with overlying scalp changes",
    ),
    FindingKind(
        "resection_cavity",
        ("resection_cavity", "postsurgical_changes"),
        ("tumor_resection_cavity", "postsurgical_changes"),
        True,
        "routine",
        "postoperative",
        "CSF-filled cavity beneath a craniotomy",
    ),
    FindingKind(
        "ms_lesions",
        (),
        ("multiple_sclerosis",),
        False,
        "routine",
        "inflammatory",
        "ovoid periventricular and juxtacortical T2/FLAIR hyperintense lesions",
    ),
    FindingKind(
        "chiari",
        ("chiari_malformation",),
        ("chiari_malformation",),
        False,
        "routine",
        "congenital",
        "cerebellar tonsils descended below the foramen magnum",
    ),
    FindingKind(
        "pneumocephalus",
        ("pneumocephalus",),
        ("pneumocephalus",),
        False,
        "urgent",
        "traumatic",
        "small intracranial gas locules",
    ),
    FindingKind(
        "svid",
        ("small_vessel_ischemic_disease",),
        ("small_vessel_ischemic_disease",),
        False,
        "routine",
        "ischemic",
        "patchy periventricular and deep white matter hypodensity / FLAIR hyperintensity",
    ),
    FindingKind(
        "scalp_hematoma",
        ("scalp_hemorrhage_hematoma",),
        (),
        True,
        "routine",
        "traumatic",
        "soft-tissue swelling with blood density in the scalp",
    ),
    FindingKind(
        "encephalomalacia",
        ("encephalomalacia_gliosis",),
        ("encephalomalacia_gliosis", "chronic_ischemic_stroke"),
        True,
        "routine",
        "ischemic",
        "CSF-density volume loss from an old infarct with gliotic margin",
    ),
    FindingKind(
        "bg_calcification",
        ("basal_ganglia_calcification",),
        (),
        False,
        "routine",
        "degenerative",
        "symmetric calcification of the globi pallidi, dense on CT",
    ),
]

CATALOG: dict[str, FindingKind] = {k.key: k for k in _KINDS}
SIDES = ("left", "right", "bilateral")


def labels_for(modality: str, finding_keys) -> set[str]:
    """Ontology labels implied by a set of rendered findings, for 'CT' or 'MR'."""
    out: set[str] = set()
    for key in finding_keys:
        kind = CATALOG[key]
        out.update(kind.ct_labels if modality == "CT" else kind.mri_labels)
    return out


def triage_for(finding_keys) -> str:
    levels = [CATALOG[k].triage for k in finding_keys]
    if "urgent" in levels:
        return "urgent"
    return "routine" if levels else "unremarkable"
