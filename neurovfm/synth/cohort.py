"""The embedded health system's patients and studies, drawn deterministically from a seed.

A patient has a birth date, sex, ethnicity and 1..k imaging studies over the years. The first
abnormal study draws a *clinical scenario* (trauma, hemorrhagic stroke, tumour, ...) that brings its
typical companions (an acute SDH often comes with a scalp hematoma and a fracture; a large mass
shifts the midline away from itself). Later studies of the same patient evolve that state: acute
blood resolves or becomes chronic, a glioma is resected, chronic findings persist. Each study gets
an indication that fits its findings, a site, a scanner, and planted identifiers (the PHI that the
pipeline must remove later).

Everything here is cheap bookkeeping; images are rendered per study in ``synth.export``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from neurovfm.synth.catalog import CATALOG, labels_for, triage_for

# --- the health system's population -------------------------------------------------------------
ETHNICITIES = (
    ("White", 0.68),
    ("Black", 0.13),
    ("Asian", 0.05),
    ("Hispanic", 0.05),
    ("Other", 0.03),
    ("Unknown", 0.06),
)
# Scanners per modality: (DICOM Manufacturer, model, field strength or None for CT).
SCANNERS = {
    "CT": (
        ("GE MEDICAL SYSTEMS", "Revolution CT", None),
        ("GE MEDICAL SYSTEMS", "LightSpeed VCT", None),
        ("SIEMENS", "SOMATOM Force", None),
        ("SIEMENS", "SOMATOM Definition AS+", None),
        ("Philips", "iCT 256", None),
        ("Philips", "Brilliance 64", None),
        ("TOSHIBA", "Aquilion ONE", None),
        ("Canon Medical Systems", "Aquilion Prime SP", None),
    ),
    "MR": (
        ("GE MEDICAL SYSTEMS", "SIGNA Premier", 3.0),
        ("GE MEDICAL SYSTEMS", "DISCOVERY MR750", 3.0),
        ("GE MEDICAL SYSTEMS", "Optima MR450w", 1.5),
        ("SIEMENS", "Prisma", 3.0),
        ("SIEMENS", "Skyra", 3.0),
        ("SIEMENS", "Aera", 1.5),
        ("SIEMENS", "Avanto", 1.5),
        ("Philips Medical Systems", "Ingenia", 3.0),
        ("Philips Medical Systems", "Achieva", 1.5),
        ("TOSHIBA", "Vantage Titan", 1.5),
        ("Canon Medical Systems", "Vantage Galan 3T", 3.0),
    ),
}
VENDOR_FAMILY = {
    "GE MEDICAL SYSTEMS": "GE",
    "SIEMENS": "Siemens",
    "Philips": "Philips",
    "Philips Medical Systems": "Philips",
    "TOSHIBA": "Canon",
    "Canon Medical Systems": "Canon",
}
FIRST_NAMES = (
    "JAMES",
    "MARY",
    "ROBERT",
    "PATRICIA",
    "JOHN",
    "JENNIFER",
    "MICHAEL",
    "LINDA",
    "DAVID",
    "ELIZABETH",
    "WILLIAM",
    "BARBARA",
    "KWAME",
    "MEI",
    "AHMED",
    "FATIMA",
    "CARLOS",
    "LUCIA",
    "DMITRI",
    "PRIYA",
    "HIROSHI",
    "AMARA",
    "TOMASZ",
    "INGRID",
    "OLUWASEUN",
    "SOFIA",
)
LAST_NAMES = (
    "SMITH",
    "JOHNSON",
    "WILLIAMS",
    "BROWN",
    "JONES",
    "GARCIA",
    "MILLER",
    "DAVIS",
    "NGUYEN",
    "KOWALSKI",
    "OKAFOR",
    "PATEL",
    "TANAKA",
    "MUELLER",
    "HASSAN",
    "ROSSI",
    "CHEN",
    "IVANOV",
    "ANDERSEN",
    "OYELARAN",
    "DUBOIS",
    "HERNANDEZ",
    "KIM",
    "OCONNOR",
    "LINDQVIST",
    "MWANGI",
)
STREETS = (
    "MAPLE ST",
    "HURON AVE",
    "WASHTENAW AVE",
    "PACKARD RD",
    "STADIUM BLVD",
    "LIBERTY ST",
    "PLYMOUTH RD",
    "GEDDES AVE",
    "MAIN ST",
    "DIXBORO RD",
)
CITIES = (
    "ANN ARBOR MI 48104",
    "YPSILANTI MI 48197",
    "DEXTER MI 48130",
    "SALINE MI 48176",
    "CHELSEA MI 48118",
    "DETROIT MI 48201",
)
REFERRERS = (
    "PATEL^ANITA^^^MD",
    "GREEN^THOMAS^^^MD",
    "NAKAMURA^KEN^^^DO",
    "OSEI^ABENA^^^MD",
    "FISCHER^ANNA^^^MD",
    "LOPEZ^MIGUEL^^^MD",
    "ER^PHYSICIAN^^^",
)

# --- clinical scenarios of a first abnormal study ---------------------------------------------------
# name -> weight per modality. Weights were tuned so that the 300-study demo has >= 12 positives per
# common label and modality (see tests/test_synth_reports.py).
SCENARIO_WEIGHTS = {
    "CT": {
        "trauma_sdh": 0.12,
        "trauma_edh": 0.06,
        "trauma_minor": 0.09,
        "chronic_sdh": 0.07,
        "ich": 0.10,
        "ivh": 0.05,
        "stroke": 0.10,
        "old_infarct": 0.05,
        "tumor": 0.12,
        "postop": 0.12,
        "hydrocephalus": 0.08,
        "degenerative": 0.05,
        "chiari": 0.03,
    },
    "MR": {
        "trauma_sdh": 0.07,
        "trauma_edh": 0.03,
        "chronic_sdh": 0.06,
        "ich": 0.08,
        "ivh": 0.05,
        "stroke": 0.11,
        "old_infarct": 0.05,
        "tumor": 0.13,
        "postop": 0.12,
        "hydrocephalus": 0.07,
        "degenerative": 0.04,
        "chiari": 0.05,
        "ms": 0.15,
    },
}
SIZES = (("small", 0.35), ("medium", 0.4), ("large", 0.25))
# Kinds that disappear (resolve) between studies, with the probability that they do.
RESOLVING = {
    "sdh_acute": 0.6,
    "edh": 0.8,
    "ich_parenchymal": 0.7,
    "ivh": 0.85,
    "pneumocephalus": 0.95,
    "scalp_hematoma": 0.9,
    "midline_shift": 0.75,
    "skull_fracture_nondisplaced": 0.5,
    "skull_fracture_displaced": 0.3,
    "sdh_chronic": 0.4,
}
MASS_KINDS = ("sdh_acute", "sdh_chronic", "edh", "ich_parenchymal", "glioma")


@dataclass
class PatientInfo:
    """Identity of one patient: the PHI planted in headers and reports."""

    index: int
    mrn: str
    name: str  # DICOM PN: LAST^FIRST
    birth_date: dt.date
    sex: str
    ethnicity: str
    address: str
    other_id: str


@dataclass
class StudyPlan:
    """Everything about one study that is decided before rendering (picklable, sent to workers)."""

    index: int
    patient: PatientInfo
    study_date: dt.date
    study_time: str
    age: int
    modality: str
    site: str
    manufacturer: str
    vendor: str  # GE | Siemens | Philips | Canon
    model: str
    field_strength: float | None
    accession: str
    findings: list[dict]  # [{"kind", "side", "size"}] for the renderer
    resolved: list[dict] = field(default_factory=list)  # earlier findings now gone (report says so)
    history: list[str] = field(default_factory=list)  # kinds this patient had on earlier studies
    prior_date: dt.date | None = None
    prior_modality: str | None = None
    scenario: str = "normal"
    indication: str = ""
    contrast: bool = False
    report_present: bool = True
    phi_in_report: bool = False
    referring: str = ""
    bad_inputs: list[str] = field(default_factory=list)  # planted defects (see synth.bad_inputs)

    @property
    def kinds(self) -> list[str]:
        return [f["kind"] for f in self.findings]

    @property
    def labels(self) -> list[str]:
        return sorted(labels_for(self.modality, self.kinds))

    @property
    def triage(self) -> str:
        return triage_for(self.kinds)


def _choice(rng: np.random.Generator, pairs):
    names = [p[0] for p in pairs]
    w = np.array([p[1] for p in pairs], dtype=float)
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def _side(rng, bilateral_p: float = 0.0) -> str:
    if bilateral_p and rng.random() < bilateral_p:
        return "bilateral"
    return "left" if rng.random() < 0.5 else "right"


def _opposite(side: str) -> str:
    return {"left": "right", "right": "left"}[side]


def _finding(kind: str, side: str | None, size: str) -> dict:
    if not CATALOG[kind].lateralised:
        side = None
    return {"kind": kind, "side": side, "size": size}


def sample_age(rng: np.random.Generator, pediatric_fraction: float = 0.08, max_age: int = 95) -> int:
    """Adult-skewed ages: a pediatric tail plus a beta bump peaking in the sixties."""
    if rng.random() < pediatric_fraction:
        return int(rng.integers(0, 18))
    return int(round(18 + (max_age - 18) * rng.beta(3.2, 2.0)))


def _age_findings(rng, age: int) -> list[dict]:
    """Background degenerative findings whose prevalence rises with age."""
    out = []
    p_atrophy = float(np.clip((age - 45) / 60, 0, 0.7))
    p_svid = float(np.clip((age - 50) / 55, 0, 0.65))
    if rng.random() < p_atrophy:
        out.append(_finding("atrophy", None, _choice(rng, (("small", 0.5), ("medium", 0.4), ("large", 0.1)))))
    if rng.random() < p_svid:
        out.append(_finding("svid", None, _choice(rng, (("small", 0.5), ("medium", 0.4), ("large", 0.1)))))
    return out


def _fracture(rng, side: str) -> dict:
    kind = "skull_fracture_displaced" if rng.random() < 0.35 else "skull_fracture_nondisplaced"
    return _finding(kind, side, "small")


def _core_findings(rng: np.random.Generator, scenario: str) -> list[dict]:
    """The lesion(s) that define ``scenario`` and their typical companions."""
    size = _choice(rng, SIZES)
    side = _side(rng)
    f: list[dict] = []
    if scenario in ("trauma_sdh", "trauma_edh"):
        kind = "sdh_acute" if scenario == "trauma_sdh" else "edh"
        f.append(_finding(kind, _side(rng, 0.12 if kind == "sdh_acute" else 0.0), size))
        side = f[0]["side"] if f[0]["side"] != "bilateral" else side
        if rng.random() < 0.5:
            f.append(_finding("scalp_hematoma", side if rng.random() < 0.3 else _opposite(side), "medium"))
        if rng.random() < (0.7 if kind == "edh" else 0.4):
            f.append(_fracture(rng, side))
            if rng.random() < 0.25:
                f.append(_finding("pneumocephalus", None, "small"))
        if rng.random() < 0.15:
            f.append(_finding("ivh", None, "small"))
    elif scenario == "trauma_minor":
        if rng.random() < 0.8:
            f.append(_finding("scalp_hematoma", side, size))
        if not f or rng.random() < 0.6:
            f.append(_fracture(rng, side))
            if rng.random() < 0.25:
                f.append(_finding("pneumocephalus", None, "small"))
    elif scenario == "chronic_sdh":
        f.append(_finding("sdh_chronic", _side(rng, 0.25), size))
        if rng.random() < 0.2:
            f.append(_finding("sdh_acute", f[0]["side"], "small"))  # acute-on-chronic
    elif scenario == "ich":
        f.append(_finding("ich_parenchymal", side, size))
        if rng.random() < 0.35:
            f.append(_finding("ivh", None, "small"))
    elif scenario == "ivh":
        f.append(_finding("ivh", None, size))
        if rng.random() < 0.6:
            f.append(_finding("ventriculomegaly", None, "medium"))
    elif scenario == "stroke":
        f.append(_finding("stroke_acute", side, size))
        if rng.random() < 0.25:
            f.append(_finding("encephalomalacia", _opposite(side) if rng.random() < 0.5 else side, "small"))
    elif scenario == "old_infarct":
        f.append(_finding("encephalomalacia", side, size))
    elif scenario == "tumor":
        f.append(_finding("glioma" if rng.random() < 0.6 else "meningioma", side, size))
    elif scenario == "postop":
        f.append(_finding("craniotomy", side, "medium"))
        if rng.random() < 0.7:
            f.append(_finding("resection_cavity", side, size))
        if rng.random() < 0.35:
            f.append(_finding("pneumocephalus", None, "small"))
        if rng.random() < 0.2:
            f.append(_finding("glioma", side, "small"))  # residual / recurrent tumour
    elif scenario == "hydrocephalus":
        f.append(_finding("ventriculomegaly", None, size))
    elif scenario == "degenerative":
        f.append(_finding("atrophy", None, size))
        if rng.random() < 0.6:
            f.append(_finding("svid", None, "medium"))
        if rng.random() < 0.3:
            f.append(_finding("bg_calcification", None, "small"))
    elif scenario == "chiari":
        f.append(_finding("chiari", None, size))
        if rng.random() < 0.2:
            f.append(_finding("ventriculomegaly", None, "small"))
    elif scenario == "ms":
        f.append(_finding("ms_lesions", None, size))
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    return f


def scenario_findings(
    rng: np.random.Generator, scenarios: list[str], age: int, incidental_calcification_p: float = 0.08
) -> list[dict]:
    """Findings of a first abnormal study with one or more (comorbid) scenarios."""
    f: list[dict] = []
    for scenario in scenarios:
        core = _core_findings(rng, scenario)
        taken = {g["kind"] for g in f}
        f.extend(g for g in core if g["kind"] not in taken)
    if rng.random() < incidental_calcification_p:
        f.append(_finding("bg_calcification", None, "small"))
    f.extend(_age_findings(rng, age))
    return _with_midline_shift(rng, _dedupe(f))


def _dedupe(findings: list[dict]) -> list[dict]:
    seen, out = set(), []
    for f in findings:
        if f["kind"] not in seen:
            seen.add(f["kind"])
            out.append(f)
    return out


def _with_midline_shift(rng, findings: list[dict]) -> list[dict]:
    """A large (or sometimes moderate) unilateral mass pushes the midline to the other side."""
    if any(f["kind"] == "midline_shift" for f in findings):
        return findings
    for f in findings:
        if f["kind"] in MASS_KINDS and f["side"] in ("left", "right"):
            p = {"large": 0.9, "medium": 0.3, "small": 0.0}[f["size"]]
            if rng.random() < p:
                shift = "large" if f["size"] == "large" else "small"
                return findings + [_finding("midline_shift", _opposite(f["side"]), shift)]
    return findings


def evolve(rng: np.random.Generator, state: list[dict], age: int) -> tuple[list[dict], list[dict]]:
    """The next study's findings from the previous ones: (persisting + new, resolved)."""
    kept, resolved = [], []
    for f in state:
        kind = f["kind"]
        if kind == "stroke_acute":
            kept.append(_finding("encephalomalacia", f["side"], f["size"]))
            continue
        if kind == "glioma" and rng.random() < 0.7:
            kept += [_finding("craniotomy", f["side"], "medium"), _finding("resection_cavity", f["side"], f["size"])]
            continue
        if kind in RESOLVING and rng.random() < RESOLVING[kind]:
            if kind == "sdh_acute" and rng.random() < 0.4:
                kept.append(_finding("sdh_chronic", f["side"], "small"))
            resolved.append(f)
            continue
        kept.append(dict(f))
    kept = _dedupe(kept + _age_findings(rng, age))
    # a midline shift without its mass resolves with it
    if not any(f["kind"] in MASS_KINDS and f["side"] in ("left", "right") for f in kept):
        resolved += [f for f in kept if f["kind"] == "midline_shift"]
        kept = [f for f in kept if f["kind"] != "midline_shift"]
    return kept, resolved


def visible(findings: list[dict], modality: str) -> list[dict]:
    """Only the kinds that have a label in this modality's ontology are rendered and reported."""
    return [f for f in findings if labels_for(modality, [f["kind"]])]


# --- indications -----------------------------------------------------------------------------------
def indication_for(
    rng, modality: str, findings: list[dict], scenario: str, follow_up: bool, resolved: list[dict]
) -> str:
    """A clinical indication that fits what the study shows (or what was suspected)."""
    kinds = {f["kind"]: f for f in findings}
    opts: list[str]
    if follow_up and (resolved or kinds):
        prior = (resolved or list(kinds.values()))[0]["kind"]
        names = {
            "sdh_acute": "subdural hematoma",
            "sdh_chronic": "chronic subdural",
            "edh": "epidural hematoma",
            "ich_parenchymal": "intraparenchymal hemorrhage",
            "glioma": "glioma",
            "craniotomy": "glioma",
            "resection_cavity": "glioma",
            "ms_lesions": "multiple sclerosis",
            "meningioma": "meningioma",
            "ventriculomegaly": "hydrocephalus",
            "chiari": "Chiari malformation",
            "stroke_acute": "stroke",
            "encephalomalacia": "prior stroke",
            "ivh": "IVH",
        }
        what = names.get(prior, "abnormal head imaging")
        opts = [
            f"Follow-up {what}.",
            f"Follow up {what}, interval evaluation.",
            f"Hx of {what}, reassess.",
            f"{what[0].upper() + what[1:]} follow-up",
        ]
        return str(rng.choice(opts))
    if "stroke_acute" in kinds:
        weak = _opposite(kinds["stroke_acute"]["side"])  # deficit is contralateral to the infarct
        opts = [
            f"{weak.capitalize()}-sided weakness, last known well 3 hours ago.",
            f"Acute {weak} hemiparesis.",
            f"Code stroke. Aphasia and {weak} facial droop."
            if weak == "right"
            else f"Code stroke. {weak.capitalize()} arm drift and neglect.",
            f"Sudden {weak} sided numbness and weakness.",
        ]
    elif {"sdh_acute", "edh", "skull_fracture_displaced", "skull_fracture_nondisplaced", "scalp_hematoma"} & set(kinds):
        opts = [
            "Fall from standing, hit head, on anticoagulation.",
            "MVC, head trauma, GCS 13.",
            "Trauma. Assault with loss of consciousness.",
            "Head injury after fall down stairs.",
            "Level 1 trauma, unrestrained driver.",
        ]
    elif "sdh_chronic" in kinds:
        opts = [
            "Elderly patient with progressive confusion and recent falls.",
            "Headache and gait instability.",
            "Altered mental status, frequent falls.",
        ]
    elif "ich_parenchymal" in kinds or "ivh" in kinds:
        opts = [
            "Worst headache of life.",
            "Sudden severe headache and vomiting.",
            "Acute onset headache, hypertensive.",
            "Thunderclap headache, rule out bleed.",
        ]
    elif "glioma" in kinds or "meningioma" in kinds:
        opts = [
            "New onset seizure.",
            "Progressive headaches and word finding difficulty.",
            "Personality change, evaluate for mass.",
            "Seizure, rule out mass lesion.",
        ]
    elif "craniotomy" in kinds or "resection_cavity" in kinds:
        opts = [
            "Follow-up glioma, status post resection.",
            "Post-op check.",
            "Postoperative evaluation after tumor resection.",
            "S/p craniotomy, assess for complication.",
        ]
    elif "ms_lesions" in kinds:
        opts = [
            "Optic neuritis, evaluate for demyelinating disease.",
            "Numbness and tingling, r/o MS.",
            "Known multiple sclerosis, disease surveillance.",
            "Blurred vision and paresthesias.",
        ]
    elif "chiari" in kinds:
        opts = ["Occipital headaches worse with cough.", "Neck pain and headaches.", "Suspected Chiari malformation."]
    elif "ventriculomegaly" in kinds:
        opts = [
            "Gait disturbance, urinary incontinence, memory decline.",
            "Evaluate for hydrocephalus.",
            "Enlarging head circumference." if rng.random() < 0.5 else "Headache, papilledema.",
        ]
    elif kinds:
        opts = ["Memory loss.", "Dizziness.", "Cognitive decline, evaluate for atrophy.", "Chronic headaches."]
    else:
        opts = [
            "Headache.",
            "Dizziness.",
            "Syncope.",
            "Headache, rule out mass." if modality == "MR" else "Headache, rule out bleed.",
            "Worst headache of life.",
            "Acute stroke symptoms, resolved.",
            "Fall, no loss of consciousness.",
            "Altered mental status.",
            "Seizure.",
        ]
    return str(rng.choice(opts))


# --- the cohort ------------------------------------------------------------------------------------
def _date_between(rng, start: dt.date, end: dt.date) -> dt.date:
    return start + dt.timedelta(days=int(rng.integers(0, (end - start).days + 1)))


def sample_study_date(rng, start: dt.date, end: dt.date, recent_from: dt.date, recent_fraction: float) -> dt.date:
    """Uniform in [start, recent_from) or, with probability ``recent_fraction``, in [recent_from, end].

    Imaging volume grows every year; this mixture stands in for that growth and guarantees a
    prospective test window of a chosen size after the development cut-off.
    """
    if rng.random() < recent_fraction:
        return _date_between(rng, recent_from, end)
    return _date_between(rng, start, recent_from - dt.timedelta(days=1))


def _age_at(birth: dt.date, day: dt.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def _unique_number(rng, used: set, digits: int) -> str:
    """A random ``digits``-digit identifier not in ``used`` (MRNs and accessions never repeat)."""
    while True:
        value = f"{int(rng.integers(10 ** (digits - 1), 10**digits))}"
        if value not in used:
            used.add(value)
            return value


def _patient(rng, index: int, first_age: int, first_date: dt.date, used: set) -> PatientInfo:
    birth = first_date - dt.timedelta(days=int(first_age * 365.25 + rng.integers(0, 360)))
    sex = "F" if rng.random() < 0.52 else "M"
    name = f"{rng.choice(LAST_NAMES)}^{rng.choice(FIRST_NAMES)}"
    address = f"{int(rng.integers(10, 9999))} {rng.choice(STREETS)}, {rng.choice(CITIES)}"
    return PatientInfo(
        index=index,
        mrn=_unique_number(rng, used, 8),
        name=name,
        birth_date=birth,
        sex=sex,
        ethnicity=_choice(rng, ETHNICITIES),
        address=address,
        other_id=f"UMH{int(rng.integers(10**6, 10**7))}",
    )


AGE_LIMITS = {  # scenario -> (min age, max age) of the patients who can present with it
    "degenerative": (40, 200),
    "chronic_sdh": (40, 200),
    "stroke": (18, 200),
    "old_infarct": (18, 200),
    "ms": (16, 55),
    "chiari": (0, 60),
}


class ScenarioDeck:
    """Scenarios dealt from a shuffled deck with counts proportional to their weights.

    Dealing instead of independent draws keeps every scenario's share close to its weight even
    in a 150-study demo, so each common label gets enough positives; a card a patient's age rules
    out stays in the deck for the next patient.
    """

    def __init__(self, rng: np.random.Generator, weights: dict[str, float], deck_size: int = 200):
        self.rng, self.weights, self.deck_size = rng, weights, deck_size
        self.cards: list[str] = []

    def _refill(self) -> None:
        total = sum(self.weights.values())
        cards = [name for name, w in self.weights.items() for _ in range(max(1, round(self.deck_size * w / total)))]
        self.cards += [cards[i] for i in self.rng.permutation(len(cards))]

    def draw(self, age: int, exclude: tuple[str, ...] = ()) -> str:
        for _ in range(2):
            for pos, name in enumerate(self.cards):
                lo, hi = AGE_LIMITS.get(name, (0, 200))
                if lo <= age <= hi and name not in exclude:
                    return self.cards.pop(pos)
            self._refill()
        raise ValueError(f"no scenario fits age {age} (excluding {exclude})")


def sample_scenarios(rng, deck: ScenarioDeck, age: int, comorbidity_p: float = 0.45) -> list[str]:
    """One clinical scenario, and with probability ``comorbidity_p`` a second, different one."""
    first = deck.draw(age)
    if rng.random() >= comorbidity_p:
        return [first]
    return [first, deck.draw(age, exclude=(first,))]


def build_cohort(synth_cfg: dict, seed: int) -> list[StudyPlan]:
    """All studies of the embedded health system, sorted by study date (index = position)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC0]))
    n_studies = int(synth_cfg["n_studies"])
    lo, hi = (int(v) for v in synth_cfg["studies_per_patient"])
    start, end = (dt.date.fromisoformat(str(d)) for d in synth_cfg["date_range"])
    recent_from = dt.date.fromisoformat(str(synth_cfg["recent_from"]))
    recent_fraction = float(synth_cfg["recent_fraction"])
    sites = list(synth_cfg["sites"])
    normal_fraction = float(synth_cfg["normal_fraction"])
    missing = float(synth_cfg["report_missing_fraction"])
    phi_fraction = float(synth_cfg["report_phi_fraction"])
    comorbidity_p = float(synth_cfg["comorbidity_fraction"])
    deck_size = int(synth_cfg["scenario_deck_size"])
    calcification_p = float(synth_cfg["incidental_calcification_fraction"])
    if not start < recent_from <= end:
        raise ValueError(f"synth.recent_from {recent_from} must lie inside date_range {start}..{end}")

    # 1. patients and their study dates
    visits: list[tuple[PatientInfo, dt.date]] = []
    used_ids: set[str] = set()
    p_index = 0
    while len(visits) < n_studies:
        k = int(rng.integers(lo, hi + 1)) if rng.random() < 0.45 else lo
        dates = sorted(sample_study_date(rng, start, end, recent_from, recent_fraction) for _ in range(k))
        patient = _patient(rng, p_index, sample_age(rng), dates[0], used_ids)
        visits += [(patient, d) for d in dates]
        p_index += 1
    visits = visits[:n_studies]
    # 2. modality: exactly round(n * ct_fraction) CTs
    n_ct = int(round(n_studies * float(synth_cfg["ct_fraction"])))
    modalities = np.array(["CT"] * n_ct + ["MR"] * (n_studies - n_ct))[rng.permutation(n_studies)]
    # 3. findings per patient, walking through the visits in date order
    decks = {m: ScenarioDeck(rng, SCENARIO_WEIGHTS[m], deck_size) for m in SCENARIO_WEIGHTS}
    by_patient: dict[int, list[int]] = {}
    for i, (p, _) in enumerate(visits):
        by_patient.setdefault(p.index, []).append(i)
    plans: list[StudyPlan | None] = [None] * n_studies
    for idxs in by_patient.values():
        state: list[dict] = []
        history: list[str] = []
        normal_patient = rng.random() < normal_fraction
        prev = None
        for n, i in enumerate(idxs):
            patient, day = visits[i]
            modality = str(modalities[i])
            age = _age_at(patient.birth_date, day)
            scenario, resolved = "normal", []
            if normal_patient:
                state = []
            elif n == 0 or not state:
                for _ in range(20):
                    scenarios = sample_scenarios(rng, decks[modality], age, comorbidity_p)
                    state = scenario_findings(rng, scenarios, age, calcification_p)
                    if visible(state, modality):
                        break
                scenario = "+".join(scenarios)
            else:
                scenario = "follow_up"
                state, resolved = evolve(rng, state, age)
            findings = visible(state, modality)
            plans[i] = _study(
                rng,
                i,
                patient,
                day,
                age,
                modality,
                sites,
                findings,
                resolved,
                history,
                prev,
                scenario,
                missing,
                phi_fraction,
                used_ids,
            )
            history = sorted(set(history) | {f["kind"] for f in state} | {f["kind"] for f in resolved})
            prev = (day, modality)
    ordered = sorted(plans, key=lambda s: (s.study_date, s.patient.index, s.index))
    for new_index, s in enumerate(ordered):
        s.index = new_index
    return ordered


def _study(
    rng,
    i,
    patient,
    day,
    age,
    modality,
    sites,
    findings,
    resolved,
    history,
    prev,
    scenario,
    missing,
    phi_fraction,
    used_ids,
) -> StudyPlan:
    site_i = int(rng.choice(len(sites), p=_site_weights(len(sites))))
    manu, model, field_t = SCANNERS[modality][int(rng.integers(len(SCANNERS[modality])))]
    kinds = {f["kind"] for f in findings}
    if modality == "MR":
        contrast = rng.random() < (0.9 if kinds & {"glioma", "meningioma", "resection_cavity", "ms_lesions"} else 0.2)
    else:
        contrast = rng.random() < (0.3 if kinds & {"glioma", "meningioma"} else 0.04)
    follow_up = scenario == "follow_up"
    plan = StudyPlan(
        index=i,
        patient=patient,
        study_date=day,
        study_time=f"{int(rng.integers(0, 24)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}",
        age=age,
        modality=modality,
        site=sites[site_i],
        manufacturer=manu,
        vendor=VENDOR_FAMILY[manu],
        model=model,
        field_strength=field_t,
        accession="E" + _unique_number(rng, used_ids, 9),
        findings=findings,
        resolved=[f for f in resolved if labels_for(modality, [f["kind"]])],
        history=list(history),
        prior_date=prev[0] if prev else None,
        prior_modality=prev[1] if prev else None,
        scenario=scenario,
        contrast=bool(contrast),
        report_present=bool(rng.random() >= missing),
        phi_in_report=bool(rng.random() < phi_fraction),
        referring=str(rng.choice(REFERRERS)),
    )
    plan.indication = indication_for(rng, modality, findings, scenario, follow_up, plan.resolved)
    return plan


def _site_weights(n: int) -> np.ndarray:
    """The main hospital scans most; satellites share the rest."""
    w = np.array([2.0] + [1.0] * (n - 1))
    return w / w.sum()
