"""Phrase bank B: a second radiologist group, written apart from ``synth.phrases`` and used only to evaluate.

The report extractor's rules are developed against bank A (``synth.phrases``) and against the hand-written
cases of ``tests/test_labels_hard_cases.py``; this bank measures how they hold on wording they were not
tuned to. It has its own vocabulary (British and American spellings, eponyms and pattern words, terms
with the negation inside them), its own sentence shapes (the condition named first and qualified after it,
telegraphic fragments, long dictated sentences with comparisons) and its own non-finding sentences
(recommendations, communication lines, list headers, differentials, treated disease, words used in
another sense). Slots: {side} {Side} {site} {mm} {cm} {ml} {dir} {prior}.

Every positive phrase of a kind states that kind's diagnoses in both ontologies (for ``glioma``: an
intra-axial, high-grade tumour with oedema; for ``encephalomalacia``: an old infarct with tissue loss) and
nothing else; every distractor lists the kinds whose presence it would contradict, and is used only when
none of them is present.
"""

from __future__ import annotations

# anatomy the bank names for each lateralised kind (the renderer's location is not used)
SITES = {
    "sdh_acute": ("frontal convexity", "frontotemporal convexity", "hemispheric convexity", "parietal convexity"),
    "sdh_chronic": ("frontoparietal convexity", "hemispheric convexity", "frontal convexity"),
    "edh": ("temporal convexity", "parietal convexity", "temporoparietal region"),
    "ich_parenchymal": ("putamen", "external capsule", "thalamus", "frontal lobe", "parietal lobe"),
    "glioma": ("frontal lobe", "temporal lobe", "parietal lobe", "insula"),
    "meningioma": ("frontal convexity", "parasagittal parietal convexity", "sphenoid wing", "falx"),
    "stroke_acute": ("MCA territory", "middle cerebral artery territory", "frontal operculum and insula"),
    "skull_fracture_displaced": ("parietal bone", "frontal bone", "temporal squama"),
    "skull_fracture_nondisplaced": ("occipital bone", "parietal bone", "frontal bone"),
    "craniotomy": ("frontal", "pterional", "frontotemporal", "parietal"),
    "resection_cavity": ("frontal lobe", "temporal lobe", "parietal lobe"),
    "scalp_hematoma": ("parietal scalp", "frontal scalp", "occipital scalp"),
    "encephalomalacia": ("frontal lobe", "parietal lobe", "MCA territory", "occipital lobe"),
}

# Findings that are present: several phrasings per kind, '|' splits one finding over two sentences.
PRESENT = {
    "sdh_acute": [
        "Crescentic high-attenuation collection over the {side} {site}, {mm} mm in depth, an acute subdural haematoma.",
        "Acute subdural blood layers over the {side} {site}; maximal depth {mm} mm.",
        "{Side}-sided acute subdural haematoma, {mm} mm.",
        "Over the {side} {site} there is a {mm} mm thick rim of hyperdense subdural blood.",
        "New acute subdural hemorrhage overlying the {side} frontal lobe, measuring {mm} mm.",
    ],
    "sdh_chronic": [
        "Chronic subdural haematoma over the {side} {site}, {mm} mm, of low attenuation.",
        "{Side} {site}: low-density crescentic subdural collection, {mm} mm, a chronic subdural haematoma.",
        "The {side} chronic subdural collection measures {mm} mm.|It is hypodense in keeping with a chronic subdural haematoma.",
        "Stable chronic {side} subdural hematoma, {mm} mm.",
    ],
    "edh": [
        "Lentiform extradural haematoma deep to the {side} {site}, {mm} mm thick.",
        "{Side} extradural haematoma ({mm} mm), biconvex in shape.",
        "A biconvex epidural blood collection is present along the {side} {site}, measuring {mm} mm.",
        "Acute epidural haemorrhage, {side} {site}, up to {mm} mm.",
    ],
    "ich_parenchymal": [
        "Intracerebral haematoma centred in the {side} {site}, about {ml} ml, with a thin rim of oedema.",
        "Acute {side} {site} parenchymal bleed, roughly {cm} cm.",
        "Haemorrhage within the {side} {site}, {cm} cm across, is intraparenchymal.",
        "{Side} {site} intraparenchymal haemorrhage, estimated {ml} cc.",
        "There is a new acute hemorrhage in the {side} {site} parenchyma measuring {cm} cm.",
    ],
    "ivh": [
        "Blood products layer dependently in both occipital horns.",
        "Intraventricular haemorrhage, small volume.",
        "There is blood within the ventricular system.",
        "Small amount of intraventricular blood.",
    ],
    "ventriculomegaly": [
        "The lateral and third ventricles are dilated, disproportionate to the sulci.",
        "Ventricular dilatation, the sulci being normal.",
        "Hydrocephalus: the temporal horns are rounded and the third ventricle is dilated.",
        "Enlarged ventricles out of keeping with the cortical sulci, compatible with communicating hydrocephalus.",
    ],
    "atrophy": [
        "Global cerebral volume loss, more than expected for age.",
        "Prominent sulci and ventricles from generalised atrophy.",
        "Generalised cerebral atrophy, more than expected for age.",
        "Volume loss is diffuse, with widening of the cortical sulci.",
    ],
    "glioma": [
        "Necrotic, irregularly enhancing intra-axial tumour in the {side} {site}, {cm} cm, with surrounding oedema; "
        "appearances favour glioblastoma.",
        "{Side} {site} mass, {cm} cm, centrally necrotic with extensive vasogenic oedema: high-grade glioma.",
        "Infiltrating tumour of the {side} {site} with necrosis and perilesional oedema, in keeping with a high-grade "
        "glioma.",
        "Heterogeneous intra-axial mass in the {side} {site}.|Necrotic centre and surrounding oedema are typical of "
        "glioblastoma.",
    ],
    "meningioma": [
        "Homogeneous extra-axial mass along the {side} {site} with a dural tail, {cm} cm, most in keeping with a meningioma.",
        "{Side} {site} meningioma, {cm} cm.",
        "Broad dural-based lesion over the {side} {site}, {cm} cm; meningioma.",
        "The {side} {site} extra-axial mass ({cm} cm) is a meningioma.",
    ],
    "stroke_acute": [
        "Hypoattenuation and swelling of the {side} {site} with loss of grey-white differentiation: acute infarct.",
        "Acute {side} {site} infarction.",
        "New {side} {site} infarct.",
        "Cytotoxic oedema in the {side} {site} in keeping with an acute ischaemic stroke.",
        "Restricted diffusion throughout the {side} {site}, an acute infarct.",
    ],
    "midline_shift": [
        "Midline shift to the {dir}, {mm} mm.",
        "The septum pellucidum is displaced {mm} mm to the {dir}.",
        "{mm} mm {dir}ward deviation of the midline.",
        "Subfalcine shift {dir}wards of {mm} mm.",
    ],
    "skull_fracture_displaced": [
        "Depressed {side} {site} fracture, the fragment depressed by {mm} mm.",
        "Comminuted fracture of the {side} {site} with inward displacement.",
        "Displaced fracture through the {side} {site}.",
    ],
    "skull_fracture_nondisplaced": [
        "Undisplaced linear fracture of the {side} {site}.",
        "Hairline fracture of the {side} {site} without depression.",
        "Non-displaced fracture line crossing the {side} {site}.",
    ],
    "craniotomy": [
        "{Side} {site} craniotomy flap in place.",
        "Post-surgical appearance of a {side} {site} craniotomy, the bone flap secured with plates.",
        "The patient has had a {side} {site} craniotomy.",
    ],
    "resection_cavity": [
        "Surgical resection cavity in the {side} {site}.",
        "CSF-filled post-operative cavity at the {side} {site} resection site.",
        "{Side} {site} cavity at the site of previous tumour resection.",
    ],
    "ms_lesions": [
        "Ovoid periventricular T2 hyperintensities perpendicular to the callosum (Dawson fingers), with juxtacortical "
        "lesions: multiple sclerosis.",
        "Demyelinating plaques in the periventricular and juxtacortical white matter, in keeping with multiple sclerosis.",
        "Multiple sclerosis plaques, periventricular and infratentorial.",
    ],
    "chiari": [
        "Pointed cerebellar tonsils lie {mm} mm below the foramen magnum: Chiari 1 malformation.",
        "Tonsillar ectopia of {mm} mm (Chiari I).",
        "Chiari type 1 malformation with tonsils {mm} mm below the basion-opisthion line.",
    ],
    "pneumocephalus": [
        "Locules of intracranial gas.",
        "A few bubbles of air are present intracranially.",
        "Pneumocephalus, small volume.",
    ],
    "svid": [
        "Confluent periventricular white matter low attenuation, leukoaraiosis.",
        "Periventricular and deep white matter changes of small vessel disease.",
        "Small-vessel ischaemic change in the deep white matter.",
        "Microangiopathic white matter change, moderate.",
    ],
    "scalp_hematoma": [
        "Subgaleal haematoma over the {side} {site}.",
        "{Side} {site} soft tissue swelling with haematoma.",
        "Haematoma in the {side} {site}.",
    ],
    "encephalomalacia": [
        "Established infarct of the {side} {site} with encephalomalacia.",
        "Old {side} {site} infarct: encephalomalacia and gliosis.",
        "Encephalomalacic change in the {side} {site} from a previous infarct.",
        "Chronic infarction in the {side} {site} with tissue loss and gliosis.",
    ],
    "bg_calcification": [
        "Mineralisation of both globi pallidi.",
        "Calcification of the basal ganglia bilaterally.",
        "Dense calcification in both lentiform nuclei.",
    ],
}

# Short impression lines (telegraphic), one per kind.
TELEGRAPHIC = {
    "sdh_acute": "{Side} acute SDH {mm} mm.",
    "sdh_chronic": "{Side} chronic SDH.",
    "edh": "{Side} EDH {mm} mm.",
    "ich_parenchymal": "{Side} {site} IPH, ~{ml} ml.",
    "ivh": "IVH.",
    "ventriculomegaly": "Hydrocephalus.",
    "atrophy": "Cerebral atrophy.",
    "glioma": "{Side} {site} high-grade glioma with oedema.",
    "meningioma": "{Side} meningioma.",
    "stroke_acute": "Acute {side} {site} infarct.",
    "midline_shift": "MLS {mm} mm to the {dir}.",
    "skull_fracture_displaced": "Depressed {side} skull fracture.",
    "skull_fracture_nondisplaced": "Undisplaced {side} skull fracture.",
    "craniotomy": "{Side} craniotomy.",
    "resection_cavity": "{Side} resection cavity.",
    "ms_lesions": "Multiple sclerosis.",
    "chiari": "Chiari I.",
    "pneumocephalus": "Intracranial air.",
    "svid": "Small vessel disease.",
    "scalp_hematoma": "{Side} scalp haematoma.",
    "encephalomalacia": "Old {side} infarct.",
    "bg_calcification": "Basal ganglia calcification.",
}

# Pertinent negatives in this group's words: (text, kinds it denies, modality or None)
_BLEED = frozenset({"sdh_acute", "sdh_chronic", "edh", "ich_parenchymal", "ivh"})
NEGATIVES = [
    ("No intracranial blood.", _BLEED, None),
    ("There is no haemorrhage, either intra- or extra-axial.", _BLEED, None),
    ("Extra-axial spaces: no collection.", frozenset({"sdh_acute", "sdh_chronic", "edh"}), None),
    ("The sulci are not abnormally widened.", frozenset({"atrophy"}), None),
    ("Ventricles not dilated.", frozenset({"ventriculomegaly"}), None),
    ("The ventricular system is not enlarged.", frozenset({"ventriculomegaly"}), None),
    ("Grey-white matter differentiation is maintained throughout.", frozenset({"stroke_acute"}), "CT"),
    ("No region of restricted diffusion.", frozenset({"stroke_acute"}), "MR"),
    ("Midline structures are central.", frozenset({"midline_shift"}), None),
    ("The cerebellar tonsils are not low-lying.", frozenset({"chiari"}), None),
    (
        "No calvarial fracture is identified.",
        frozenset({"skull_fracture_displaced", "skull_fracture_nondisplaced"}),
        "CT",
    ),
    ("Scalp: no haematoma.", frozenset({"scalp_hematoma"}), "CT"),
    ("No space-occupying lesion.", frozenset({"glioma", "meningioma"}), None),
    ("No abnormal parenchymal or meningeal enhancement.", frozenset({"glioma", "meningioma", "ms_lesions"}), "MR"),
    ("White matter signal is normal for age.", frozenset({"ms_lesions", "svid"}), "MR"),
    ("No intracranial air.", frozenset({"pneumocephalus"}), None),
]

# Sentences that are not findings, or that name a condition in a sense that is not the diagnosis.
# (text, kinds it would contradict, modality or None, failure class). A named variant here must not be a diagnosis of
# either ontology (a cavum septum pellucidum or a pineal cyst is one: stating it would be a finding).
DISTRACTORS = [
    # recommendations and conditionals
    (
        "If there is clinical suspicion of venous sinus thrombosis, a CT venogram could be performed.",
        frozenset(),
        "CT",
        "recommendation",
    ),
    (
        "MRI is more sensitive than CT for a small infarct and could be considered if symptoms persist.",
        frozenset({"stroke_acute"}),
        "CT",
        "recommendation",
    ),
    ("Should there be concern for meningitis, lumbar puncture is suggested.", frozenset(), None, "recommendation"),
    (
        "Contrast-enhanced imaging may help if metastatic disease is a clinical concern.",
        frozenset(),
        None,
        "recommendation",
    ),
    (
        "Recommend follow-up imaging to exclude an underlying mass once the blood has resorbed.",
        frozenset(),
        None,
        "recommendation",
    ),
    # communication lines
    (
        "Findings were discussed with the stroke team by telephone at the time of reporting.",
        frozenset({"stroke_acute"}),
        None,
        "communication",
    ),
    ("Result communicated to the neuro-oncology service.", frozenset(), None, "communication"),
    ("Discussed with the on-call aneurysm nurse specialist.", frozenset(), None, "communication"),
    (
        "Verbal report given to the hydrocephalus clinic coordinator.",
        frozenset({"ventriculomegaly"}),
        None,
        "communication",
    ),
    # differentials and hedges after the noun
    ("Venous sinus thrombosis is thought less likely.", frozenset(), None, "post_hedge"),
    ("Metastatic disease would be unusual in this context.", frozenset(), None, "post_hedge"),
    (
        "An abscess is considered less likely given the absence of restricted diffusion.",
        frozenset(),
        "MR",
        "post_hedge",
    ),
    ("Cerebral contusion is a possibility but not convincingly seen.", frozenset(), "CT", "post_hedge"),
    ("Encephalitis remains a differential consideration clinically.", frozenset(), "MR", "post_hedge"),
    # words in another sense / named normal variants
    ("Arachnoid granulations in the transverse sinuses, a normal variant.", frozenset(), None, "other_sense"),
    (
        "Partially imaged herniation of orbital fat through a dehiscent lamina papyracea, longstanding.",
        frozenset(),
        None,
        "other_sense",
    ),
    ("Fetal origin of the right posterior cerebral artery, an anatomical variant.", frozenset(), "MR", "other_sense"),
    (
        "Prominent perivascular spaces in the basal ganglia, a normal finding at this age.",
        frozenset(),
        None,
        "other_sense",
    ),
    ("Mega cisterna magna is not present.", frozenset(), None, "other_sense"),
]

# follow-up: routine kinds are described as stable, urgent kinds as new or enlarging
STABLE = (
    "Unchanged since {prior}.",
    "No interval change from {prior}.",
    "Appearances are stable compared with {prior}.",
)
WORSE = ("This is new since {prior}.", "This has enlarged since {prior}.", "Increased compared with {prior}.")
RESOLVED = (
    "The {side} {name} demonstrated on {prior} has since resolved.",
    "There is no longer any {name}.",
    "The previous {side} {name} has been evacuated.",
    "Complete resolution of the {side} {name}.",
)
NAMES = {
    "sdh_acute": "subdural collection",
    "sdh_chronic": "subdural collection",
    "edh": "extradural haematoma",
    "ich_parenchymal": "parenchymal haematoma",
    "ivh": "intraventricular blood",
    "pneumocephalus": "intracranial gas",
    "scalp_hematoma": "scalp haematoma",
    "midline_shift": "midline shift",
    "skull_fracture_nondisplaced": "skull fracture",
    "skull_fracture_displaced": "depressed skull fracture",
}
# what the group writes for a normal study
NORMAL = (
    "No acute intracranial abnormality identified.",
    "Normal appearances of the brain.",
    "Unremarkable study.",
    "No intracranial abnormality to account for the symptoms.",
)
# statements about structures outside the ontology's findings (none may state a diagnosis the truth lacks)
FILLER = [
    ("Paranasal sinuses and mastoids are well aerated.", None),
    ("The orbits and their contents appear normal.", None),
    ("The dural venous sinuses are of normal calibre.", None),
    ("Expected arterial flow voids.", "MR"),
    ("Pituitary gland normal in size.", "MR"),
]
ADDENDA = (
    "ADDENDUM: The impression was reviewed with the referring team; no change to the report.",
    "ADDENDUM: Coronal reformats were reviewed and do not alter the conclusion.",
)
# headings of the structured style, with the kinds each one holds
HEADINGS = (
    ("EXTRA-AXIAL SPACES", frozenset({"sdh_acute", "sdh_chronic", "edh"})),
    ("HAEMORRHAGE", frozenset({"ich_parenchymal", "ivh"})),
    (
        "BRAIN PARENCHYMA",
        frozenset(
            {
                "glioma",
                "meningioma",
                "stroke_acute",
                "ms_lesions",
                "svid",
                "encephalomalacia",
                "atrophy",
                "bg_calcification",
                "resection_cavity",
                "chiari",
            }
        ),
    ),
    ("VENTRICLES AND MIDLINE", frozenset({"ventriculomegaly", "midline_shift", "pneumocephalus"})),
    (
        "BONES AND SOFT TISSUES",
        frozenset({"skull_fracture_displaced", "skull_fracture_nondisplaced", "craniotomy", "scalp_hematoma"}),
    ),
)
HEADING_NORMAL = {
    "EXTRA-AXIAL SPACES": "Normal.",
    "HAEMORRHAGE": "None.",
    "BRAIN PARENCHYMA": "Normal for age.",
    "VENTRICLES AND MIDLINE": "Normal.",
    "BONES AND SOFT TISSUES": "Unremarkable.",
}
