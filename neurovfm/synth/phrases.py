"""The radiologists' phrase bank of the embedded health system.

Templates use ``str.format`` slots: {side} (left/right/bilateral), {adj} (location as an adjective,
e.g. 'frontoparietal'), {loc} (location noun phrase), {mm}, {ml}, {hedge}, {dir} (direction of a
shift), {prior} (date of the comparison study). Positive templates come as noun phrases (to combine
several findings in one sentence) and as stand-alone sentences (some split over two sentences).
Pertinent negatives and uncertain mentions list the finding kinds they deny, so they are used only
when none of those kinds is present.
"""

from __future__ import annotations

HEDGES = (
    "consistent with",
    "compatible with",
    "most compatible with",
    "suspicious for",
    "concerning for",
    "in keeping with",
    "likely representing",
    "favored to represent",
)

DEFAULT_LOCATION = {
    "sdh_acute": "frontoparietal convexity",
    "sdh_chronic": "frontoparietal convexity",
    "edh": "temporal convexity",
    "ich_parenchymal": "basal ganglia",
    "glioma": "frontal lobe",
    "meningioma": "parafalcine frontal convexity",
    "stroke_acute": "MCA territory",
    "skull_fracture_displaced": "parietal bone",
    "skull_fracture_nondisplaced": "occipital bone",
    "craniotomy": "frontotemporal",
    "resection_cavity": "frontal lobe",
    "scalp_hematoma": "parietal scalp",
    "encephalomalacia": "frontal lobe",
    "ivh": "occipital horns",
    "ms_lesions": "periventricular and juxtacortical white matter",
}

# Noun phrases (lower case start; articles included where English needs them).
NP = {
    "sdh_acute": [
        "an acute {side} {adj} subdural hematoma measuring up to {mm} mm",
        "a {mm} mm hyperdense subdural collection along the {side} {loc}",
        "acute {side} SDH ({mm} mm)",
        "an acute subdural haematoma over the {side} {loc}, {mm} mm thick",
    ],
    "sdh_chronic": [
        "a chronic {side} {adj} subdural hematoma measuring {mm} mm",
        "a {mm} mm hypodense {side} {adj} subdural collection {hedge} chronic subdural hematoma",
        "a subacute to chronic {side} subdural hematoma up to {mm} mm in thickness",
    ],
    "edh": [
        "a biconvex {side} {adj} epidural hematoma measuring {mm} mm",
        "an acute {side} {adj} EDH, {mm} mm thick",
        "a lentiform extra-axial hematoma in the {side} {adj} region, {hedge} epidural hematoma",
    ],
    "ich_parenchymal": [
        "a {ml} mL intraparenchymal hemorrhage in the {side} {loc}",
        "an acute {side} {adj} intraparenchymal hematoma measuring approximately {cm} cm",
        "{side} {adj} ICH (approximately {ml} mL)",
    ],
    "ivh": [
        "intraventricular hemorrhage layering in the occipital horns",
        "a small amount of intraventricular blood",
        "IVH within the lateral ventricles",
    ],
    "ventriculomegaly": [
        "ventriculomegaly",
        "enlargement of the lateral and third ventricles out of proportion to the sulci",
        "communicating hydrocephalus",
        "hydrocephalus with dilated lateral ventricles",
    ],
    "atrophy": [
        "generalized cerebral volume loss",
        "diffuse parenchymal atrophy",
        "age-advanced global atrophy",
        "prominence of the sulci and ventricles {hedge} volume loss",
    ],
    "glioma": [
        "an infiltrative {side} {adj} intra-axial mass with surrounding vasogenic edema, {hedge} high-grade glioma",
        "a heterogeneous {cm} cm {side} {adj} mass with central necrosis and surrounding edema, likely glioblastoma",
        "a {side} {adj} intra-axial neoplasm with peritumoral edema {hedge} high-grade glioma",
    ],
    "meningioma": [
        "a dural-based extra-axial mass along the {side} {loc} {hedge} meningioma",
        "a {cm} cm homogeneous {side} {adj} extra-axial lesion, likely meningioma",
        "a {side} {adj} meningioma measuring {cm} cm",
    ],
    "stroke_acute": [
        "an acute infarct in the {side} MCA territory",
        "acute ischemia of the {side} {loc}",
        "an acute {side} middle cerebral artery territory infarction",
    ],
    "midline_shift": [
        "{mm} mm of {dir}ward midline shift",
        "midline shift of {mm} mm to the {dir}",
        "{dir}ward subfalcine shift of {mm} mm",
    ],
    "skull_fracture_displaced": [
        "a depressed fracture of the {side} {loc}",
        "a displaced {side} {adj} skull fracture",
        "a comminuted, depressed {side} {adj} calvarial fracture",
    ],
    "skull_fracture_nondisplaced": [
        "a nondisplaced linear fracture of the {side} {loc}",
        "a nondisplaced {side} {adj} skull fracture",
        "a linear non-displaced fracture through the {side} {loc}",
    ],
    "craniotomy": [
        "postoperative changes of a {side} {adj} craniotomy",
        "a {side} {adj} craniotomy",
        "expected postsurgical changes from {side} {adj} craniotomy",
    ],
    "resection_cavity": [
        "a {side} {adj} resection cavity",
        "a fluid-filled {side} {adj} surgical cavity",
        "a resection cavity in the {side} {loc}",
    ],
    "ms_lesions": [
        "multiple ovoid periventricular and juxtacortical white matter lesions {hedge} multiple sclerosis",
        "demyelinating lesions compatible with MS",
        "numerous T2/FLAIR hyperintense lesions perpendicular "
        "to the ventricles, {hedge} demyelinating disease (multiple sclerosis)",
    ],
    "chiari": [
        "a Chiari I malformation with tonsillar ectopia of {mm} mm",
        "Chiari 1 malformation",
        "cerebellar tonsillar ectasia of {mm} mm below the foramen magnum {hedge} Chiari I malformation",
    ],
    "pneumocephalus": ["pneumocephalus", "a few foci of intracranial air", "small volume pneumocephalus"],
    "svid": [
        "chronic microvascular ischemic changes",
        "patchy periventricular white matter hypoattenuation {hedge} chronic small vessel ischemic disease",
        "small vessel ischemic disease",
    ],
    "scalp_hematoma": [
        "a {side} {adj} scalp hematoma",
        "{side} {adj} subgaleal hematoma",
        "a soft tissue hematoma of the {side} {loc}",
    ],
    "encephalomalacia": [
        "encephalomalacia in the {side} {loc} {hedge} a remote infarct",
        "an old {side} {adj} infarct with encephalomalacia and gliosis",
        "chronic {side} {adj} infarct with surrounding gliosis",
    ],
    "bg_calcification": [
        "basal ganglia calcifications",
        "symmetric calcification of the globi pallidi",
        "dystrophic basal ganglia calcification",
    ],
}

# Stand-alone sentences; '|' splits one finding over two sentences.
SENT = {
    "sdh_acute": [
        "There is an acute subdural hematoma along the {side} {loc}, measuring up to {mm} mm.",
        "Hyperdense extra-axial collection along the {side} {loc}.|It measures {mm} mm in maximal thickness "
        "and is {hedge} acute subdural hemorrhage.",
        "{Side} {adj} SDH measuring {mm} mm.",
        "Acute {side} subdural haematoma, maximal thickness {mm} mm.",
    ],
    "sdh_chronic": [
        "Chronic {side} {adj} subdural hematoma measuring {mm} mm.",
        "There is a {side} hypodense subdural collection along the {loc}.|This is {hedge} a chronic "
        "subdural hematoma, {mm} mm thick.",
        "Subacute-chronic {side} SDH up to {mm} mm.",
    ],
    "edh": [
        "Biconvex extra-axial hematoma along the {side} {loc}, measuring {mm} mm, {hedge} epidural hematoma.",
        "{Side} {adj} epidural hematoma measures {mm} mm.",
        "There is an acute {side} EDH in the {adj} region.|Maximal thickness is {mm} mm.",
    ],
    "ich_parenchymal": [
        "Acute intraparenchymal hemorrhage in the {side} {loc} measuring {cm} cm (approximately {ml} mL).",
        "There is a {side} {adj} hematoma with surrounding edema.|Estimated volume {ml} mL, {hedge} "
        "hypertensive hemorrhage.",
        "{Side} {adj} ICH, approximately {ml} mL.",
    ],
    "ivh": [
        "Blood layers in the occipital horns of the lateral ventricles, {hedge} intraventricular hemorrhage.",
        "There is intraventricular extension of hemorrhage.",
        "Small volume IVH.",
    ],
    "ventriculomegaly": [
        "The ventricles are enlarged out of proportion to the sulci, {hedge} hydrocephalus.",
        "Ventriculomegaly is present.",
        "Dilated lateral and third ventricles.|Findings are {hedge} communicating hydrocephalus.",
    ],
    "atrophy": [
        "Generalized volume loss.",
        "There is diffuse cerebral atrophy.",
        "The sulci and ventricles are prominent, {hedge} age-related volume loss.",
    ],
    "glioma": [
        "Infiltrative mass in the {side} {loc} measuring {cm} cm with surrounding vasogenic edema.|Appearance is "
        "{hedge} high-grade glioma.",
        "{Side} {adj} intra-axial mass with central necrosis and edema, likely glioblastoma.",
        "There is a {cm} cm heterogeneous mass in the {side} {loc} {hedge} high grade glioma, with surrounding edema.",
    ],
    "meningioma": [
        "Extra-axial dural-based mass along the {side} {loc}, {hedge} meningioma.",
        "{Side} {adj} meningioma measures {cm} cm.",
        "There is a homogeneous extra-axial mass at the {side} {loc}.|It measures {cm} cm and is likely a meningioma.",
    ],
    "stroke_acute": [
        "Acute infarct in the {side} MCA territory.",
        "Loss of gray-white differentiation in the {side} {loc}, {hedge} acute ischemic stroke.",
        "There is an acute {side} MCA infarction.|No hemorrhagic transformation.",
    ],
    "midline_shift": [
        "There is {mm} mm of {dir}ward midline shift.",
        "Midline shift of {mm} mm to the {dir} with mass effect.",
        "Mass effect with {dir}ward shift of the midline by {mm} mm.",
    ],
    "skull_fracture_displaced": [
        "Depressed fracture of the {side} {loc}.",
        "There is a displaced {side} {adj} skull fracture.",
        "Comminuted depressed fracture involving the {side} {loc}.",
    ],
    "skull_fracture_nondisplaced": [
        "Nondisplaced linear fracture of the {side} {loc}.",
        "There is a non-displaced fracture through the {side} {loc}.",
        "{Side} {adj} nondisplaced skull fracture.",
    ],
    "craniotomy": [
        "Postoperative changes of {side} {adj} craniotomy.",
        "Status post {side} {adj} craniotomy.",
        "The patient is post {side} craniotomy.",
    ],
    "resection_cavity": [
        "{Side} {adj} resection cavity.",
        "There is a resection cavity in the {side} {loc}.",
        "Postsurgical cavity in the {side} {loc}.",
    ],
    "ms_lesions": [
        "Multiple periventricular and juxtacortical FLAIR hyperintense lesions, {hedge} multiple sclerosis.",
        "Demyelinating lesions compatible with MS.",
        "Ovoid white matter lesions oriented perpendicular to "
        "the lateral ventricles.|Findings are {hedge} demyelinating disease such as MS.",
    ],
    "chiari": [
        "Chiari I malformation, tonsillar ectasia {mm} mm below the foramen magnum.",
        "The cerebellar tonsils extend {mm} mm below the foramen magnum, {hedge} Chiari I malformation.",
        "Chiari 1 malformation.",
    ],
    "pneumocephalus": [
        "Pneumocephalus.",
        "There are scattered foci of intracranial air.",
        "Small volume pneumocephalus is noted.",
    ],
    "svid": [
        "Chronic microvascular ischemic changes.",
        "Periventricular and deep white matter changes {hedge} chronic small vessel ischemic disease.",
        "Moderate small vessel ischemic disease.",
    ],
    "scalp_hematoma": [
        "{Side} {adj} scalp hematoma.",
        "There is a {side} subgaleal hematoma.",
        "Soft tissue swelling with hematoma over the {side} {loc}.",
    ],
    "encephalomalacia": [
        "Encephalomalacia in the {side} {loc} from a remote infarct.",
        "Chronic {side} {adj} infarct with gliosis.",
        "There is {side} {adj} volume loss with gliosis, {hedge} an old infarct.",
    ],
    "bg_calcification": [
        "Basal ganglia calcifications.",
        "Symmetric calcifications of the globi pallidi, likely physiologic.",
        "Dystrophic calcification in the basal ganglia.",
    ],
}

# Key findings: the report-generation target, one canonical short sentence per present finding.
KEY = {
    "sdh_acute": "Acute {side} {adj} subdural hematoma measuring up to {mm} mm.",
    "sdh_chronic": "Chronic {side} {adj} subdural hematoma measuring up to {mm} mm.",
    "edh": "Acute {side} {adj} epidural hematoma measuring {mm} mm.",
    "ich_parenchymal": "Acute {side} {adj} intraparenchymal hemorrhage, approximately {ml} mL.",
    "ivh": "Intraventricular hemorrhage.",
    "ventriculomegaly": "Ventriculomegaly (hydrocephalus).",
    "atrophy": "Generalized cerebral atrophy.",
    "glioma": "{Side} {adj} intra-axial mass with vasogenic edema, suspicious for high-grade glioma.",
    "meningioma": "{Side} {adj} extra-axial mass, likely meningioma.",
    "stroke_acute": "Acute {side} MCA territory infarct.",
    "midline_shift": "Midline shift of {mm} mm to the {dir} with mass effect.",
    "skull_fracture_displaced": "Displaced {side} {adj} skull fracture.",
    "skull_fracture_nondisplaced": "Nondisplaced {side} {adj} skull fracture.",
    "craniotomy": "Postoperative changes of {side} {adj} craniotomy.",
    "resection_cavity": "{Side} {adj} resection cavity.",
    "ms_lesions": "White matter lesions consistent with multiple sclerosis.",
    "chiari": "Chiari I malformation.",
    "pneumocephalus": "Pneumocephalus.",
    "svid": "Chronic small vessel ischemic disease.",
    "scalp_hematoma": "{Side} {adj} scalp hematoma.",
    "encephalomalacia": "Chronic {side} {adj} infarct with encephalomalacia.",
    "bg_calcification": "Basal ganglia calcifications.",
}

# Names used when a finding is history (resolved / prior).
NAMES = {
    "sdh_acute": ("subdural hematoma", "SDH", "subdural collection"),
    "sdh_chronic": ("chronic subdural hematoma", "subdural collection"),
    "edh": ("epidural hematoma", "EDH"),
    "ich_parenchymal": ("intraparenchymal hemorrhage", "hematoma", "ICH"),
    "ivh": ("intraventricular hemorrhage", "IVH"),
    "pneumocephalus": ("pneumocephalus", "intracranial air"),
    "scalp_hematoma": ("scalp hematoma",),
    "midline_shift": ("midline shift",),
    "skull_fracture_nondisplaced": ("skull fracture",),
    "skull_fracture_displaced": ("depressed skull fracture",),
}
RESOLVED = (
    "Interval resolution of the previously seen {side} {name}.",
    "The previously noted {side} {name} has resolved.",
    "No residual {side} {name}.",
    "Resolved {side} {name} compared with {prior}.",
    "Previously described {side} {name} is no longer seen.",
)
HISTORY = ("History of {name}.", "Hx {name}.", "Known history of {name}.")
COMPARE_STABLE = (
    "Unchanged compared with {prior}.",
    "Stable since the prior examination.",
    "Not significantly changed from {prior}.",
    "Slightly decreased compared with {prior}.",
)

# (text, kinds it denies, modality or None for both)
_BLEED = frozenset({"sdh_acute", "sdh_chronic", "edh", "ich_parenchymal", "ivh"})
_URGENT = frozenset(
    {
        "sdh_acute",
        "edh",
        "ich_parenchymal",
        "ivh",
        "glioma",
        "stroke_acute",
        "midline_shift",
        "skull_fracture_displaced",
        "pneumocephalus",
        "sdh_chronic",
    }
)
NEGATIVES = [
    ("No intracranial hemorrhage.", _BLEED, None),
    ("No acute intracranial hemorrhage.", _BLEED, None),
    ("There is no evidence of acute hemorrhage.", _BLEED, None),
    ("No extra-axial fluid collection.", frozenset({"sdh_acute", "sdh_chronic", "edh"}), None),
    ("No acute infarct.", frozenset({"stroke_acute"}), None),
    ("Gray-white matter differentiation is preserved.", frozenset({"stroke_acute"}), "CT"),
    ("No restricted diffusion to suggest acute infarct.", frozenset({"stroke_acute"}), "MR"),
    ("There is no midline shift or hydrocephalus.", frozenset({"midline_shift", "ventriculomegaly"}), None),
    ("No mass effect or midline shift.", frozenset({"midline_shift"}), None),
    ("Ventricles are normal in size.", frozenset({"ventriculomegaly", "atrophy"}), None),
    (
        "The ventricles and sulci are normal in size and configuration.",
        frozenset({"ventriculomegaly", "atrophy"}),
        None,
    ),
    ("No evidence of fracture.", frozenset({"skull_fracture_displaced", "skull_fracture_nondisplaced"}), "CT"),
    (
        "The calvarium is intact.",
        frozenset({"skull_fracture_displaced", "skull_fracture_nondisplaced", "craniotomy"}),
        "CT",
    ),
    ("No intracranial mass.", frozenset({"glioma", "meningioma"}), None),
    ("No mass lesion, without mass effect.", frozenset({"glioma", "meningioma", "midline_shift"}), None),
    ("No abnormal enhancement.", frozenset({"glioma", "meningioma", "ms_lesions", "resection_cavity"}), "MR"),
    ("No pneumocephalus.", frozenset({"pneumocephalus"}), None),
    ("Scalp soft tissues are unremarkable.", frozenset({"scalp_hematoma", "craniotomy"}), "CT"),
    ("The white matter is normal in signal.", frozenset({"ms_lesions", "svid"}), "MR"),
    ("Cerebellar tonsils are normally positioned.", frozenset({"chiari"}), None),
    ("No acute intracranial abnormality.", _URGENT | {"skull_fracture_nondisplaced"}, None),
]
UNCERTAIN = [
    (
        "Cannot exclude a tiny nondisplaced fracture of the {side} occipital bone.",
        frozenset({"skull_fracture_nondisplaced", "skull_fracture_displaced"}),
        "CT",
    ),
    (
        "Questionable subtle hypodensity in the {side} insula, likely artifact; no definite acute infarct.",
        frozenset({"stroke_acute"}),
        "CT",
    ),
    ("No definite intracranial hemorrhage.", _BLEED, None),
    (
        "Questionable trace subdural blood along the tentorium, not definitely seen on coronal images.",
        frozenset({"sdh_acute", "sdh_chronic"}),
        None,
    ),
    (
        "Equivocal low position of the cerebellar tonsils, not meeting criteria for Chiari malformation.",
        frozenset({"chiari"}),
        None,
    ),
    ("A few nonspecific punctate FLAIR foci; demyelinating disease is not favored.", frozenset({"ms_lesions"}), "MR"),
    (
        "No definite mass, although a small lesion cannot be excluded without contrast.",
        frozenset({"glioma", "meningioma"}),
        None,
    ),
]
# Statements about structures outside the ontology's findings.
FILLER = [
    ("The visualized paranasal sinuses and mastoid air cells are clear.", None),
    ("Orbits are unremarkable.", None),
    ("The basal cisterns are patent.", None),
    ("Mild mucosal thickening in the maxillary sinuses.", None),
    ("Vascular calcifications in the carotid siphons.", "CT"),
    ("Normal flow voids are present.", "MR"),
    ("The pituitary gland is within normal limits.", "MR"),
    ("Dental amalgam artifact.", None),
]
TECHNIQUE = {
    ("CT", False): (
        "Axial images of the head were obtained without contrast; coronal and sagittal reformats were reviewed.",
        "Noncontrast CT of the head.",
        "Helical CT of the head without IV contrast.",
    ),
    ("CT", True): ("CT of the head before and after intravenous contrast.", "Contrast-enhanced CT of the head."),
    ("MR", False): (
        "Multiplanar multisequence MRI of the brain without contrast, including DWI.",
        "Sagittal T1, axial T2, FLAIR and diffusion-weighted images of the brain.",
    ),
    ("MR", True): (
        "Multiplanar multisequence MRI of the brain before and after gadolinium.",
        "MRI brain without and with IV contrast; DWI and post-contrast T1 images were obtained.",
    ),
}
NORMAL_IMPRESSIONS = (
    ("No acute intracranial abnormality.", None),
    ("Normal study.", None),
    ("Unremarkable examination.", None),
    ("No acute intracranial process.", None),
    ("Negative head CT.", "CT"),
    ("Normal MRI of the brain.", "MR"),
)
