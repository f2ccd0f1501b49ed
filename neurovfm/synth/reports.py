"""Free-text radiology reports (and their key findings) for the embedded health system.

A report is assembled from the phrase bank in ``synth.phrases``: present findings (with side,
location and size taken from the rendered lesions), pertinent negatives and hedged mentions of
absent disease, history and comparison statements, in varied layouts, so that labels must be
read from the meaning of the text and not from one template.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

import numpy as np

from neurovfm.synth import phrases as P
from neurovfm.synth.catalog import CATALOG
from neurovfm.synth.dicom_writer import exam_description

CATEGORY_ORDER = (
    "hemorrhagic",
    "traumatic",
    "ischemic",
    "neoplastic",
    "mass_effect",
    "csf",
    "inflammatory",
    "postoperative",
    "congenital",
    "degenerative",
)
_GENERIC_NOUNS = ("convexity", "lobe", "region", "territory", "bone", "scalp", "horns", "white matter", "hemisphere")
_FALLBACK_MM = {"small": (3, 6), "medium": (6, 11), "large": (11, 18)}


@dataclass
class Report:
    text: str
    key_findings: list[str]


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def _clean(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([.,;)])", r"\1", text)
    return text[0].upper() + text[1:] if text else text


def finding_slots(f: dict, rng: np.random.Generator) -> dict:
    """Template slots of one finding: side, location noun/adjective and sizes (from the rendered lesion)."""
    kind = f["kind"]
    side = f.get("side") or ""
    loc = str(f.get("location") or P.DEFAULT_LOCATION.get(kind, "")).strip()
    loc = re.sub(r"^(left|right|bilateral)\s+", "", loc, flags=re.I)
    adj = loc
    for noun in _GENERIC_NOUNS:
        if adj.endswith(" " + noun):
            adj = adj[: -len(noun) - 1]
            break
    volume = f.get("volume_ml")
    lo, hi = _FALLBACK_MM[f.get("size", "medium") if f.get("size") in _FALLBACK_MM else "medium"]
    if f.get("shift_mm") is not None:
        mm = float(f["shift_mm"])
    elif f.get("max_thickness_mm") is not None:
        mm = float(f["max_thickness_mm"])
    elif volume:
        mm = 10 * (6 * float(volume) / np.pi) ** (1 / 3)  # diameter of a sphere of that volume
    else:
        mm = float(rng.integers(lo, hi + 1))
    cm = 2 * (3 * float(volume) / (4 * np.pi)) ** (1 / 3) if volume else mm / 10 * 3
    ml = float(volume) if volume else round((cm**3) * np.pi / 6, 1)
    slots = {
        "side": side,
        "Side": side.capitalize(),
        "loc": loc,
        "adj": adj,
        "mm": f"{max(1, round(mm)):d}",
        "cm": f"{max(cm, 0.5):.1f}",
        "ml": f"{max(ml, 0.5):.0f}" if ml >= 2 else f"{ml:.1f}",
        "hedge": _pick(rng, P.HEDGES),
        "dir": "",
    }
    if kind == "midline_shift":
        slots.update(dir=side, side="", Side="")
    return slots


def _fmt(template: str, slots: dict) -> str:
    return _clean(template.format(**slots))


def relevance_order(findings: list[dict]) -> list[dict]:
    """Urgent findings first, then by clinical category, keeping the input order within ties."""

    def key(item):
        i, f = item
        kind = CATALOG[f["kind"]]
        return (
            kind.triage != "urgent",
            CATEGORY_ORDER.index(kind.category) if kind.category in CATEGORY_ORDER else len(CATEGORY_ORDER),
            i,
        )

    return [f for _, f in sorted(enumerate(findings), key=key)]


def key_findings(findings: list[dict], slot_map: dict[int, dict]) -> list[str]:
    """The positive findings as short sentences, most urgent first (the report-generation target)."""
    return [_fmt(P.KEY[f["kind"]], slot_map[id(f)]) for f in relevance_order(findings)]


def _positive_sentences(rng, findings, slot_map, follow_up: bool) -> list[str]:
    """Sentences for the present findings: alone, split over two sentences, or several in one."""
    remaining = list(findings)
    out: list[str] = []
    shift = next((f for f in remaining if f["kind"] == "midline_shift"), None)
    if shift is not None and rng.random() < 0.6:
        masses = [f for f in remaining if f["kind"] in ("sdh_acute", "sdh_chronic", "edh", "ich_parenchymal", "glioma")]
        if masses:
            m = masses[0]
            a = _pick(rng, P.NP[m["kind"]]).format(**slot_map[id(m)])
            b = _pick(rng, P.NP["midline_shift"]).format(**slot_map[id(shift)])
            out.append(
                _clean(
                    _pick(rng, ("There is {a} with {b}.", "{a}, causing {b}.", "{a} results in {b}.")).format(a=a, b=b)
                )
            )
            remaining = [f for f in remaining if f is not m and f is not shift]
    rng.shuffle(remaining)
    while remaining:
        f = remaining.pop()
        slots = slot_map[id(f)]
        r = rng.random()
        if r < 0.25 and remaining:
            g = remaining.pop()
            a = _pick(rng, P.NP[f["kind"]]).format(**slots)
            b = _pick(rng, P.NP[g["kind"]]).format(**slot_map[id(g)])
            out.append(
                _clean(
                    _pick(
                        rng,
                        (
                            "There is {a} and {b}.",
                            "{a}, as well as {b}.",
                            "Findings include {a} and {b}.",
                            "{a}. Also noted is {b}.",
                        ),
                    ).format(a=a, b=b)
                )
            )
        elif r < 0.7:
            out.extend(_fmt(part, slots) for part in _pick(rng, P.SENT[f["kind"]]).split("|"))
        else:
            lead = _pick(
                rng,
                (
                    "There is {a}.",
                    "{a} is noted.",
                    "{a} is present.",
                    "Redemonstrated {a}." if follow_up else "There is evidence of {a}.",
                ),
            )
            out.append(_clean(lead.format(a=_pick(rng, P.NP[f["kind"]]).format(**slots))))
    return out


def _eligible(table, present: set[str], modality: str):
    return [entry for entry in table if not (entry[1] & present) and entry[2] in (None, modality)]


def _history_name(rng, kind: str) -> str:
    return _pick(rng, P.NAMES.get(kind, (CATALOG[kind].key.replace("_", " "),)))


def write_report(study, findings: list[dict], rng: np.random.Generator) -> Report:
    """Report text and key findings of one study (``findings``: the rendered, enriched findings)."""
    slot_map = {id(f): finding_slots(f, rng) for f in findings}
    present = {f["kind"] for f in findings}
    modality = study.modality
    prior = (
        f"{'CT' if study.prior_modality == 'CT' else 'MRI'} of {study.prior_date.isoformat()}"
        if study.prior_date
        else None
    )
    follow_up = study.scenario == "follow_up" and prior is not None

    body = _positive_sentences(rng, findings, slot_map, follow_up)
    if follow_up and findings and rng.random() < 0.7:
        body.append(_clean(_pick(rng, P.COMPARE_STABLE).format(prior=prior)))
    for f in study.resolved:
        side = f.get("side") or ""
        if f["kind"] == "midline_shift":
            body.append(_pick(rng, ("The previously seen midline shift has resolved.", "No residual midline shift.")))
            continue
        body.append(
            _clean(
                _pick(rng, P.RESOLVED).format(
                    side=side, name=_history_name(rng, f["kind"]), prior=prior or "the prior study"
                )
            )
        )
    negs = _eligible(P.NEGATIVES, present, modality)
    chosen = [negs[i][0] for i in rng.permutation(len(negs))[: int(rng.integers(1, 5))]]
    unc = _eligible(P.UNCERTAIN, present, modality)
    if unc and rng.random() < 0.35:
        chosen.append(_clean(_pick(rng, unc)[0].format(side=_pick(rng, ("left", "right")))))
    fill = [t for t, m in P.FILLER if m in (None, modality)]
    chosen += [fill[i] for i in rng.permutation(len(fill))[: int(rng.integers(0, 3))]]
    if rng.random() < 0.4:
        body = body + chosen
        order = rng.permutation(len(body))
        body = [body[i] for i in order]
    else:
        body = body + [chosen[i] for i in rng.permutation(len(chosen))]

    keys = key_findings(findings, slot_map)
    impression = []
    for f, k in zip(relevance_order(findings), keys):
        if rng.random() < 0.5:
            impression.append(k)
        else:
            impression.append(_clean(_pick(rng, P.NP[f["kind"]]).format(**slot_map[id(f)]) + "."))
    if study.resolved and rng.random() < 0.6:
        f = study.resolved[0]
        impression.append(_clean(f"Interval resolution of {f.get('side') or ''} {_history_name(rng, f['kind'])}."))
    if not impression:
        impression.append(_pick(rng, [t for t, m in P.NORMAL_IMPRESSIONS if m in (None, modality)]))
    elif rng.random() < 0.3:
        extra = _eligible(P.NEGATIVES[:3], present, modality)
        if extra:
            impression.append(extra[0][0])

    indication = study.indication
    hist = [k for k in study.history if k in P.NAMES and k not in present]
    if hist and rng.random() < 0.6:
        indication += " " + _pick(rng, P.HISTORY).format(name=_history_name(rng, hist[0]))
    cran = next((f for f in findings if f["kind"] == "craniotomy"), None)
    if cran is not None and rng.random() < 0.5:
        indication += f" Prior {cran.get('side') or ''} craniotomy.".replace("  ", " ")
    return Report(text=_layout(rng, study, indication, prior, body, impression), key_findings=keys)


def _layout(rng, study, indication, prior, body, impression) -> str:
    style = int(rng.integers(3))

    def head(name):
        return (name.upper() + ":", name.capitalize() + ":", name.upper())[style]

    numbered = rng.random() < 0.5 and len(impression) > 1
    imp = "\n".join(f"{i + 1}. {s}" for i, s in enumerate(impression)) if numbered else " ".join(impression)
    width = int(rng.integers(68, 92)) if rng.random() < 0.4 else None
    findings_text = " ".join(body)
    if width:
        findings_text = textwrap.fill(findings_text, width)
        if not numbered:
            imp = textwrap.fill(imp, width)
    tech = _pick(rng, P.TECHNIQUE[(study.modality, bool(study.contrast))])
    parts = []
    if study.phi_in_report:
        last, first = study.patient.name.split("^")[:2]
        parts.append(
            f"Patient: {last}, {first}   MRN: {study.patient.mrn}   DOB: "
            f"{study.patient.birth_date.strftime('%m/%d/%Y')}   Accession: {study.accession}"
        )
    sep = "\n" if style == 2 else " "
    if rng.random() < 0.2:
        parts += [f"{head('findings')}{sep}{findings_text}", f"{head('impression')}{sep}{imp}"]
    else:
        parts += [
            f"{head('exam')}{sep}{exam_description(study)}",
            f"{head(_pick(rng, ('clinical indication', 'indication', 'history')))}{sep}{indication}",
            f"{head('technique')}{sep}{tech}",
            f"{head('comparison')}{sep}{prior if prior else _pick(rng, ('None.', 'None available.', 'No prior.'))}",
            f"{head('findings')}{sep}{findings_text}",
            f"{head('impression')}{sep}{imp}",
        ]
    return "\n\n".join(parts) + "\n"
