"""Resolvers: a mention's diagnosis from the words around it (acuity, site, cause, grade).

Each resolver gets the modality ("CT"/"MR") and a :class:`Context` and returns ontology names
(possibly none: "scalp edema" is not cerebral edema). ``ctx.local`` is the mention's own stretch
of the clause: from the previous mention (or clause start) to the next mention or a negation cue,
so that "acute right EDH and chronic left SDH" gives each collection its own acuity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Context:
    mention: str  # the matched text
    local: str  # the mention's stretch of its clause
    sentence: str
    report: str  # all diagnostic text plus the indication (for cause: trauma vs aneurysm)
    default: str | None  # the resolver's default label from the lexicon ("@tumor_site:brain_tumor")


def _rx(*words: str) -> re.Pattern:
    return re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(words) + r")", re.IGNORECASE)


ACUTE = _rx(r"acute(?![- ]on[- ]chronic)", "hyperacute", "hyper-?dense", "hyperattenuating", "high[- ]density", "fresh")
CHRONIC = _rx(
    "chronic",
    "subacute",
    "hypo-?dense",
    "iso-?dense",
    "hypoattenuating",
    "isoattenuating",
    "low[- ]density",
    "old",
    "late subacute",
    "resolving",
    "liquefied",
)
MIXED = _rx(
    r"acute[- ]on[- ]chronic",
    r"mixed[- ](?:density|attenuation|age)",
    "heterogeneous(?:ly)? (?:dense|density|attenuation)",
    "hematocrit level",
    "varying ages",
    "different ages",
    "acute and chronic",
    "chronic and acute",
)
CSF_LIKE = _rx(r"csf[- ](?:density|attenuation|intensity|signal|like)", "fluid[- ]density", "hygroma")

STROKE_ACUTE = _rx(
    r"acute(?![- ]on)",
    "hyperacute",
    "early subacute",
    r"subacute(?! to chronic)",
    "new",
    "evolving",
    "recent",
    "restrict\\w*",
    "reduced diffusion",
    "diffusion[- ]weighted",
    "dwi",
    "cytotoxic",
    "loss of (?:the )?gr[ae]y",
    "insular ribbon",
    "developing",
    "hyperdense (?:mca|vessel|artery)",
    "ongoing",
)
STROKE_CHRONIC = _rx(
    "chronic",
    "old",
    "remote",
    "prior",
    "previous",
    "sequela\\w*",
    "encephalomalac\\w*",
    "evolved",
    "late subacute",
    "history of",
    "established",
    "porencephal\\w*",
    "volume loss",
    "gliosis",
    "gliotic",
)

SAH_TRAUMA = _rx(
    "trauma\\w*",
    "fall",
    "fell",
    "mvc",
    "mva",
    "motor vehicle",
    "assault\\w*",
    "injur\\w*",
    "contusion\\w*",
    "fracture\\w*",
    "subdural",
    "sdh",
    "epidural",
    "edh",
    "struck",
    "hit",
    "blunt",
    "tbi",
    "accident",
    "convexity",
)
SAH_VASCULAR = _rx(
    "aneurysm\\w*",
    "perimesencephalic",
    "thunderclap",
    "worst headache",
    "vasospasm",
    "avm",
    "arteriovenous",
    "ruptured",
    "basal cisterns",
    "suprasellar cistern",
    "sylvian fissure",
    "interhemispheric fissure",
)

PARENCHYMA = _rx(
    "parenchym\\w*",
    "intra-?axial",
    "(?:frontal|parietal|temporal|occipital|insular) (?:lobes?|lobar|white matter|region|cortex)",
    "lobar",
    "basal ganglia",
    "thalam\\w*",
    "putam\\w*",
    "caudate",
    "capsul\\w*",
    "cerebell\\w*",
    "pons",
    "pontine",
    "brainstem",
    "brain stem",
    "midbrain",
    "medulla",
    "corona radiata",
    "centrum semiovale",
    "white matter",
    "hemispher\\w*",
    "lentiform",
    "gyr\\w*",
    "cortical",
    "corpus callosum",
    "splenium",
    "hippocamp\\w*",
)
LOBE_ADJ = _rx(
    "frontal",
    "parietal",
    "temporal",
    "occipital",
    "insular",
    "frontoparietal",
    "temporoparietal",
    "parieto-?occipital",
    "temporo-?occipital",
    "fronto-?temporal",
)
EXTRA_AXIAL_SPACE = _rx(
    "convexity",
    "extra-?axial",
    "subdural",
    "epidural",
    "extradural",
    "sulc\\w*",
    "subarachnoid",
    "cistern\\w*",
    "tentori\\w*",
    "falx",
    "falcine",
    "scalp",
    "subgaleal",
)
VENTRICLE = _rx(
    "intra-?ventricular",
    "ventricles?",
    "ventricular system",
    "occipital horns?",
    "temporal horns?",
    "frontal horns?",
    "atria",
    "atrium",
)
SULCAL = _rx("sulc\\w*", "cistern\\w*", "sylvian", "subarachnoid", "interhemispheric fissure")
EXTRACRANIAL_SOFT = _rx(
    "scalp",
    "subgaleal",
    "galeal",
    "soft[- ]tissues?",
    "subcutaneous",
    "periorbital",
    "preseptal",
    "facial",
    "face",
    "forehead",
    "cheek",
    "muscle\\w*",
    "masticator",
    "nasal",
    "sinus\\w*",
    "retropharyngeal",
    "neck",
    "mucosa\\w*",
    "orbit\\w*",
    "eyelid",
    "ear",
    "mastoid",
    "lip",
    "chin",
    "skin",
    "prevertebral",
)

SKULL_BASE = _rx(
    "skull base",
    "basilar skull",
    "clivus",
    "clival",
    "sphenoid",
    "petrous",
    "occipital condyles?",
    "otic",
    "ossicular",
    "longitudinal",
    "transverse(?! process)",
    "middle ear",
    "internal auditory",
    "cribriform",
    "anterior cranial fossa",
    "middle cranial fossa",
    "carotid canal",
    "foramen magnum",
    "jugular foramen",
    "otic capsule",
    "mastoid",
    "planum sphenoidale",
    "sella",
)
ORBIT = _rx("orbit\\w*", "blow-?out", "globe", "lamina papyracea", "orbital floor", "orbital roof", "intraorbital")
FACE = _rx(
    "facial",
    "face",
    "mandib\\w*",
    "maxill\\w*",
    "zygom\\w*",
    "zmc",
    "nasal",
    "nose",
    "le ?fort",
    "tripod",
    "pterygoid",
    "septal",
    "alveolar",
    "palat\\w*",
    "frontal sinus",
    "naso-?orbito",
    "noe",
    "tmj",
    "condyl(?:e|ar) (?:of|neck)",
)
CALVARIUM = _rx(
    "skull(?! base)",
    "calvari\\w*",
    "cranial vault",
    "(?:frontal|parietal|occipital|temporal) bone",
    "depressed",
    "parietal",
    "frontal",
    "occipital",
    "vertex",
    "diastatic",
    "suture",
)
CERVICAL = _rx(
    "cervical",
    "c-?spine",
    "c[1-7]",
    "odontoid",
    "dens",
    "vertebra\\w*",
    "spinous",
    "lamina",
    "transverse process",
    "atlas",
    "axis",
)
DISPLACED = _rx(
    r"(?<!non)(?<!non-)(?<!un)displaced",
    "depressed",
    "comminuted",
    "distracted",
    "diastatic",
    "elevated fragment",
    "step-?off",
    "angulated",
    "displacement",
)
NONDISPLACED = _rx(
    "non-?displaced",
    "undisplaced",
    "hairline",
    "linear",
    "without (?:significant )?(?:displacement|depression)",
    "non-?depressed",
)

POSTERIOR_FOSSA = _rx(
    "posterior fossa",
    "cerebell\\w*",
    "vermi\\w*",
    "brainstem",
    "brain stem",
    "pons",
    "pontine",
    "midbrain",
    "medulla\\w*",
    "fourth ventricle",
    "4th ventricle",
    "cerebellopontine",
    "cpa",
    "internal auditory canals?",
    "iac",
    "infratentorial",
    "tectal",
    "tectum",
    "foramen of luschka",
)
EXTRA_AXIAL = _rx(
    "extra-?axial",
    "dural[- ]based",
    "dura\\w*",
    "convexity",
    "falx",
    "falcine",
    "parafalcine",
    "tentori\\w*",
    "menin\\w*",
    "sphenoid wing",
    "olfactory groove",
    "planum",
    "petroclival",
    "cerebellopontine",
    "cpa",
    "internal auditory canals?",
    "iac",
    "skull base",
    "cavernous sinus",
    "parasagittal",
    "tuberculum",
)
PINEAL = _rx("pineal", "tectal plate", "quadrigeminal")
SELLAR = _rx("sella\\w*", "suprasellar", "pituitary", "infundibul\\w*", "hypophys\\w*")
INTRAVENTRICULAR = _rx(
    "intra-?ventricular",
    "(?:within|inside|arising (?:from|in)|originating (?:from|in)) the (?:\\w+ ){0,5}ventricle",
    "foramen of monro",
    "septum pellucidum",
    "choroid plexus",
    "trigone",
)
ORBIT_SITE = _rx("orbit\\w*", "intraconal", "extraconal", "optic nerve sheath", "lacrimal", "retrobulbar", "globe")
HEAD_NECK = _rx(
    "nasal cavity",
    "nasopharyn\\w*",
    "oropharyn\\w*",
    "hypopharyn\\w*",
    "pharyn\\w*",
    "laryn\\w*",
    "oral cavity",
    "tongue",
    "tonsil\\w*",
    "parotid",
    "submandibular",
    "salivary",
    "thyroid",
    "sinonasal",
    "maxillary sinus",
    "ethmoid",
    "neck",
    "glottic",
    "epiglott\\w*",
    "floor of (?:the )?mouth",
    "buccal",
    "palat\\w*",
)
SPINE_SITE = _rx(
    "spin\\w*",
    "vertebra\\w*",
    "intradural",
    "extramedullary",
    "intramedullary",
    "cord",
    "conus",
    "cauda equina",
    "sacr\\w*",
    "thecal sac",
    "epidural space of the",
)
SKULL_SITE = _rx(
    "calvari\\w*",
    "skull(?! base)",
    "diplo\\w*",
    "osseous",
    "bony",
    "bone",
    "lytic",
    "blastic",
    "inner table",
    "outer table",
    "clivus",
    "clival",
)
SCALP_SITE = _rx("scalp", "subgaleal", "subcutaneous", "skin", "cutaneous", "sebaceous")

HIGH_GRADE = _rx(
    "glioblastoma",
    "gbm",
    "high[- ]grade",
    "grade (?:3|4|iii|iv)",
    "who (?:grade )?(?:3|4|iii|iv)",
    "anaplastic",
    "necro\\w*",
    "ring[- ]?enhanc\\w*",
    "rim[- ]?enhanc\\w*",
    "peripheral(?:ly)? enhanc\\w*",
    "gliosarcoma",
    "heterogeneous(?:ly)? enhanc\\w*",
    "irregular(?:ly)? enhanc\\w*",
    "butterfly",
)
LOW_GRADE = _rx(
    "low[- ]grade",
    "grade (?:1|2|i|ii)(?![iv])",
    "who (?:grade )?(?:1|2|i|ii)(?![iv])",
    "non-?enhancing",
    "without (?:\\w+ ){0,2}enhancement",
    "pilocytic",
    "oligodendroglioma",
)
BRAINSTEM = _rx(
    "brainstem",
    "brain stem",
    "pons",
    "pontine",
    "midbrain",
    "medulla\\w*",
    "diffuse midline",
    "dipg",
    "tectal",
    "tectum",
)

ENCEPHALITIS_NONVIRAL = _rx("autoimmune", "limbic", "anti-?nmda", "paraneoplastic", "ademp?", "rasmussen")
VENTRICLE_ATROPHY = _rx(
    "sulc\\w*",
    "volume loss",
    "atroph\\w*",
    "involution\\w*",
    "age[- ]related",
    "proportion(?:al|ate)",
    "commensurate",
    "in keeping with (?:the )?(?:patient'?s )?age",
)
OUT_OF_PROPORTION = _rx("out of proportion", "disproportion\\w*")
EX_VACUO = _rx("ex[- ]?vacuo", "normal[- ]pressure", "nph")
OBSTRUCTIVE = _rx("obstruct\\w*", "non-?communicating", "aqueduct\\w*", "entrapped", "trapped", "transependymal")
AIRWAY = _rx(
    "laryn\\w*",
    "pharyn\\w*",
    "airway",
    "epiglott\\w*",
    "glottic",
    "supraglottic",
    "aryepiglottic",
    "retropharyngeal",
    "prevertebral",
    "uvula",
)
NON_CEREBRAL_EDEMA = _rx(
    "scalp",
    "soft[- ]tissues?",
    "subcutaneous",
    "periorbital",
    "preseptal",
    "facial",
    "eyelid",
    "mucosa\\w*",
    "bone marrow",
    "marrow",
    "muscle\\w*",
    "papill\\w*",
    "optic disc",
    "lip",
    "tongue",
    "neck",
)
NON_BRAIN_ATROPHY = _rx(
    "muscle\\w*",
    "optic (?:nerve|atrophy)",
    "thyroid",
    "parotid",
    "masticator",
    "pituitary",
    "testic\\w*",
    "fat",
    "kidney",
    "gland",
)
SPINE_WORDS = _rx(
    "dis[ck]s?",
    "intervertebral",
    "spin\\w*",
    "cervical",
    "lumbar",
    "thoracic",
    "vertebra\\w*",
    "foramina\\w*",
    "c[1-7]-?(?:c?[1-7]|t1)?",
    "l[1-5]",
    "t[1-9]|t1[0-2]",
    "nucleus pulposus",
)
ACQUIRED_DESCENT = re.compile(
    r"(?i)(?:secondary to|due to|from|caused by|related to|because of|as a result of|owing to)\s+"
    r"(?:\w+\s+){0,4}(?:mass\w*|tumou?r\w*|lesion\w*|herniation|hypotension|csf leak|sagging|edema|oedema|"
    r"hematoma|haematoma|hemorrhage|haemorrhage|swelling|effect)"
)
LOW_PRESSURE = _rx(
    "intra-?cranial hypotension",
    "csf (?:leak|hypovolemia|hypovolaemia)",
    "sagging",
    "brain sag",
    "low (?:csf )?pressure",
    "overdrainage",
    "over-drainage",
)
BLOOD_IN_EAR = _rx("h(?:a)?emotympanum", "blood", "hemorrhag\\w*", "haemorrhag\\w*", "hemorrhagic", "hyperdense fluid")
FOCAL_SCAR = _rx(
    "gliosis",
    "gliotic",
    "encephalomalac\\w*",
    "old infarct\\w*",
    "remote infarct\\w*",
    "prior infarct\\w*",
    "chronic infarct\\w*",
    "porencephal\\w*",
)
PERILESIONAL = _rx(
    "surrounding",
    "perilesional",
    "peri-?h(?:a)?ematomal",
    "perifocal",
    "rim of",
    "cytotoxic",
    "adjacent",
    "with (?:\\w+ ){0,3}(?:edema|oedema)",
)
EDEMA_HOST = _rx(
    "h(?:a)?emorrhag\\w*", "h(?:a)?ematoma\\w*", "bleed\\w*", "ich", "iph", "infarct\\w*", "isch(?:a)?emi\\w*", "stroke"
)
TUMOUR_WORDS = _rx(
    "mass\\w*",
    "tumou?r\\w*",
    "neoplas\\w*",
    "gliom\\w*",
    "glioblastom\\w*",
    "gbm",
    "metasta\\w*",
    "lymphom\\w*",
    "abscess\\w*",
    "lesion\\w*",
    "contusion\\w*",
)
COMPARATOR = re.compile(
    r"(?i)(?:out of proportion|disproportionate(?:ly)?|in proportion|proportionate|proportional|relative|"
    r"compared|commensurate|out of keeping)\s+(?:to|with)\s+(?:\w+\s+){0,3}$"
)
NON_BRAIN_HERNIATION = _rx(
    "hiatal",
    "hiatus",
    "inguinal",
    "umbilical",
    "ventral",
    "fat",
    "orbital",
    "bowel",
    "mucosa\\w*",
    "muscle\\w*",
    "ethmoid\\w*",
    "lamina papyracea",
    "globe",
    "meningocele",
)
PERITONSILLAR = _rx("peritonsillar", "tonsillar")
PHARYNGEAL = _rx("retropharyngeal", "parapharyngeal", "pharyngeal", "prevertebral")
ORBIT_OR_SOFT = _rx(
    "orbit\\w*",
    "subperiosteal",
    "scalp",
    "subgaleal",
    "soft[- ]tissue",
    "subcutaneous",
    "dental",
    "periapical",
    "neck",
    "submandibular",
    "parotid",
    "masticator",
    "buccal",
)
MASTOID = _rx("mastoid\\w*")
MIDDLE_EAR = _rx("middle ear", "tympan\\w*")
MINOR = _rx("mild", "minimal", "minor", "trace", "slight", "scattered", "small", "few")


def _has(rx: re.Pattern, text: str) -> bool:
    return rx.search(text) is not None


def sdh_acuity(modality, ctx):
    if _has(CSF_LIKE, ctx.local) and not _has(ACUTE, ctx.local):
        return ["subdural_hygroma_effusions"]
    if _has(MIXED, ctx.local):
        return ["acute_subdural_hematoma", "subacute_chronic_subdural_hematoma"]
    acute, chronic = _has(ACUTE, ctx.local), _has(CHRONIC, ctx.local)
    out = []
    if acute or not chronic:  # an unqualified subdural hematoma on CT is read as acute
        out.append("acute_subdural_hematoma")
    if chronic:
        out.append("subacute_chronic_subdural_hematoma")
    return out


def sdh_mr(modality, ctx):
    if _has(CSF_LIKE, ctx.local) and not _has(ACUTE, ctx.local):
        return ["subdural_hygroma_effusions"]
    return ["subdural_hematoma"]


def sah_cause(modality, ctx):
    """Traumatic vs aneurysmal SAH: words of the clause first, then of the whole report (indication
    included: 'fall' there is context, not a finding); unqualified SAH defaults to traumatic (most SAH
    seen on head CT/MRI)."""
    for text in (ctx.local, ctx.sentence, ctx.report):
        trauma, vascular = _has(SAH_TRAUMA, text), _has(SAH_VASCULAR, text)
        if trauma and not vascular:
            return ["traumatic_subarachnoid_hemorrhage"]
        if vascular and not trauma:
            return ["aneurysmal_subarachnoid_hemorrhage"]
    return ["traumatic_subarachnoid_hemorrhage"]


def bleed_site(modality, ctx):
    """A bare 'hemorrhage'/'hematoma': classify by where the clause puts it."""
    text = ctx.local
    if _has(EXTRACRANIAL_SOFT, text):
        return ["scalp_hemorrhage_hematoma"] if modality == "CT" and _has(SCALP_SITE, text) else []
    if _has(re.compile(r"subdural", re.I), text):
        return sdh_acuity(modality, ctx) if modality == "CT" else ["subdural_hematoma"]
    if _has(re.compile(r"epidural|extradural", re.I), text):
        return ["epidural_hematoma"]
    if _has(SULCAL, text):
        return sah_cause(modality, ctx)
    if _has(VENTRICLE, text) and not _has(PARENCHYMA, text):
        return ["intraventricular_hemorrhage"]
    if _has(PARENCHYMA, text) or _has(LOBE_ADJ, text):
        return ["intraparenchymal_hemorrhage"]
    if re.search(r"hematoma|haematoma|blood products?", ctx.mention, re.I):
        return []  # a hematoma of unknown site is not necessarily intracranial
    return ["intracranial_hemorrhage"]


def ich_site(modality, ctx):
    """'ICH' is both intracranial and intracerebral hemorrhage: with a parenchymal site it is the latter."""
    text = ctx.local
    if not _has(EXTRA_AXIAL_SPACE, text) and (_has(PARENCHYMA, text) or _has(LOBE_ADJ, text)):
        return ["intraparenchymal_hemorrhage"]
    return ["intracranial_hemorrhage"]


def contusion(modality, ctx):
    if _has(EXTRACRANIAL_SOFT, ctx.local) and not _has(PARENCHYMA, ctx.local):
        return ["scalp_hemorrhage_hematoma"] if modality == "CT" and _has(SCALP_SITE, ctx.local) else []
    out = ["brain_contusion"]
    if re.search(r"hemorrhagic|haemorrhagic", ctx.local, re.I):
        out.append("intracranial_hemorrhage")
    return out


def fracture_site(modality, ctx):
    text = ctx.local
    out = []
    if _has(SKULL_BASE, text):
        out.append("skull_base_fracture")
    if _has(ORBIT, text):
        out.append("orbital_trauma")
    if _has(FACE, text):
        out.append("craniofacial_injury")
    calvarial = [m.group().lower() for m in CALVARIUM.finditer(text)]
    if "skull_base_fracture" in out:  # "petrous temporal bone": the temporal bone is the skull base here
        calvarial = [c for c in calvarial if c != "temporal bone"]
    if _has(CERVICAL, text) and not (out or calvarial):
        return []  # a spine fracture: no label in the head CT ontology
    if calvarial or not out:
        displaced = _has(DISPLACED, text) and not _has(NONDISPLACED, text)
        out.append("displaced_skull_fracture" if displaced else "nondisplaced_skull_fracture")
    return out


def gas_site(modality, ctx):
    if _has(re.compile(r"orbit|intraorbital", re.I), ctx.local):
        return ["orbital_emphysema"] if modality == "CT" else []
    if _has(re.compile(r"scalp|soft[- ]tissue|subcutaneous|subgaleal|sinus|mastoid", re.I), ctx.local) and not _has(
        re.compile(r"intracranial|pneumocephal|subdural|extra-?axial|ventric", re.I), ctx.local
    ):
        return []
    return ["pneumocephalus"]


def stroke_acuity(modality, ctx):
    acute, chronic = _has(STROKE_ACUTE, ctx.local), _has(STROKE_CHRONIC, ctx.local)
    out = []
    if acute or not chronic:  # an unqualified infarct is read as acute
        out.append("acute_ischemic_stroke")
    if chronic and modality == "MR":
        out.append("chronic_ischemic_stroke")
    return out


def lacune(modality, ctx):
    acute = _has(STROKE_ACUTE, ctx.local) and not re.search(r"chronic", ctx.local, re.I)
    if modality == "MR":
        return ["lacunar_stroke"] + (["acute_ischemic_stroke"] if acute else [])
    return ["acute_ischemic_stroke"] if acute else []


def tumor_site(modality, ctx):
    """Where a mass / tumour is. CT splits intra- vs extra-axial and posterior fossa; MRI names sites."""
    text = ctx.local
    if _has(SCALP_SITE, text) and not _has(PARENCHYMA, text):
        return []
    if _has(ORBIT_SITE, text):
        return ["orbital_tumor"]
    if _has(HEAD_NECK, text) and not _has(PARENCHYMA, text):
        return ["head_neck_tumor"]
    if _has(SPINE_SITE, text) and not _has(PARENCHYMA, text):
        return ["spine_tumor"]
    if _has(SKULL_SITE, text) and not _has(PARENCHYMA, text):
        return ["skull_bone_tumor"] if modality == "CT" else []
    if _has(PINEAL, text):
        return ["pineal_tumor"]
    if _has(SELLAR, text):
        return ["pituitary_tumor"]
    if modality == "CT":
        out = []
        extra = _has(EXTRA_AXIAL, text) and not re.search(r"intra-?axial", text, re.I)
        out.append(
            "extra_axial_brain_tumor"
            if extra or (ctx.default == "extra_axial_brain_tumor" and not _has(PARENCHYMA, text))
            else "intra_axial_brain_tumor"
        )
        if _has(POSTERIOR_FOSSA, text):
            out.append("posterior_fossa_tumors")
        return out
    if _has(INTRAVENTRICULAR, text) and ctx.default == "brain_tumor":
        return ["intraventricular_tumor"]
    return [ctx.default or "brain_tumor"]


def glioma_grade(modality, ctx):
    text = ctx.local + " " + ctx.mention
    out = ["glioma"]
    if _has(BRAINSTEM, text):
        out.append("brainstem_glioma")
    if _has(HIGH_GRADE, text):
        out.append("high_grade_glioma")
    elif _has(LOW_GRADE, text):
        out.append("low_grade_glioma")
    if re.search(r"pilocytic", text, re.I) and _has(POSTERIOR_FOSSA, text):
        out.append("pediatric_posterior_fossa_tumor")
    return out


def pf_tumor(modality, ctx):
    out = ["pediatric_posterior_fossa_tumor"]
    if re.search(r"pilocytic", ctx.mention, re.I):
        out += ["glioma", "low_grade_glioma"]
    if _has(INTRAVENTRICULAR, ctx.local) and not _has(POSTERIOR_FOSSA, ctx.local):
        return ["intraventricular_tumor"]
    return out


def abscess_site(modality, ctx):
    text = ctx.local + " " + ctx.mention
    if _has(PERITONSILLAR, text):
        return ["peritonsillar_abscess"] if modality == "CT" else []
    if _has(PHARYNGEAL, text):
        return ["pharyngeal_abscess"] if modality == "CT" else []
    if _has(ORBIT_OR_SOFT, text) and not _has(PARENCHYMA, text):
        return []
    return ["cerebral_abscess"] if modality == "CT" else ["brain_abscess"]


def encephalitis(modality, ctx):
    if _has(ENCEPHALITIS_NONVIRAL, ctx.local + " " + ctx.mention):
        return []
    return ["viral_encephalitis"] if modality == "MR" else []


def ventricles(modality, ctx):
    """Enlarged ventricles: obstructive, ex vacuo (MRI), or plain ventriculomegaly. Ventricles enlarged in
    proportion to the sulci are atrophy (recorded by the atrophy concept), not ventriculomegaly."""
    text = ctx.local + " " + ctx.mention
    if _has(OBSTRUCTIVE, text):
        return ["obstructive_hydrocephalus"]
    if _has(EX_VACUO, text):
        return ["hydrocephalus_ex_vacuo"] if modality == "MR" else ["ventriculomegaly"]
    if _has(VENTRICLE_ATROPHY, text) and not _has(OUT_OF_PROPORTION, text):
        return []
    return ["ventriculomegaly"]


def edema_site(modality, ctx):
    text = ctx.local + " " + ctx.mention
    if _has(AIRWAY, text):
        return ["airway_obstruction"] if modality == "CT" else []
    if _has(NON_CEREBRAL_EDEMA, text) and not _has(PARENCHYMA, text):
        return []
    if re.search(r"transependymal|interstitial", text, re.I):
        return ["transependymal_flow"] if modality == "CT" else []
    if _has(PERILESIONAL, ctx.sentence) and _has(EDEMA_HOST, ctx.sentence) and not _has(TUMOUR_WORDS, ctx.sentence):
        return []  # the rim of oedema of a hematoma or the swelling of an infarct is part of that lesion
    return ["cerebral_edema"]


def atrophy_site(modality, ctx):
    if _has(NON_BRAIN_ATROPHY, ctx.local + " " + ctx.mention):
        return []
    if _has(FOCAL_SCAR, ctx.sentence) and (
        _has(LOBE_ADJ, ctx.local) or re.search(r"(?i)\b(?:left|right)\b", ctx.local)
    ):
        return []  # focal volume loss with gliosis at an old infarct is the scar (encephalomalacia), not atrophy
    before = ctx.local[: max(ctx.local.rfind(ctx.mention), 0)]
    if COMPARATOR.search(before):
        return []  # "ventricles enlarged out of proportion to any volume loss": the yardstick, not a finding
    return ["cerebral_atrophy"]


def herniation(modality, ctx):
    text = ctx.local + " " + ctx.mention
    if _has(SPINE_WORDS, text) and not re.search(r"tonsil|uncal|subfalc|transtentorial", text, re.I):
        return ["spinal_degenerative_changes"]
    if re.search(r"chiari", text, re.I):
        return []
    if _has(NON_BRAIN_HERNIATION, text):
        return []  # herniation of another tissue (orbital fat, bowel, mucosa)
    return ["brain_herniation"]


def mass_effect_cause(modality, ctx):
    """Effaced cisterns or sulci: mass effect, unless the sentence blames low CSF pressure (sagging, not a mass)."""
    if _has(LOW_PRESSURE, ctx.sentence):
        return []
    return ["brain_mass_effect"]


def tonsils(modality, ctx):
    """Low cerebellar tonsils: Chiari malformation, unless the clause gives an acquired cause (a mass, herniation,
    intracranial hypotension)."""
    if _has(ACQUIRED_DESCENT, ctx.sentence):
        return []
    return ["chiari_malformation"]


def ear_fluid(modality, ctx):
    """Fluid in the middle ear or mastoid: effusion / otitis, unless the sentence says it is blood (trauma)."""
    if _has(BLOOD_IN_EAR, ctx.sentence):
        return []
    return [ctx.default] if ctx.default else []


def ent_site(modality, ctx):
    text = ctx.local + " " + ctx.mention
    if _has(BLOOD_IN_EAR, ctx.sentence):
        return []  # fluid that is blood (haemotympanum) is trauma, not inflammation
    if re.search(r"mucosal|mucoperiosteal", ctx.mention, re.I) and _has(MINOR, text):
        return []  # minimal mucosal thickening is seen in many asymptomatic people
    if _has(MASTOID, text):
        return ["mastoid_effusion"]
    if _has(MIDDLE_EAR, text):
        return ["otitis_media"]
    return ["sinusitis"]


RESOLVERS = {
    f.__name__: f
    for f in (
        sdh_acuity,
        sdh_mr,
        sah_cause,
        bleed_site,
        ich_site,
        contusion,
        fracture_site,
        gas_site,
        stroke_acuity,
        lacune,
        tumor_site,
        glioma_grade,
        pf_tumor,
        abscess_site,
        encephalitis,
        ventricles,
        edema_site,
        atrophy_site,
        herniation,
        tonsils,
        mass_effect_cause,
        ear_fluid,
        ent_site,
    )
}
