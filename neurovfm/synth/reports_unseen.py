"""Report writer B: reports of the same studies in another group's words (``synth.phrases_unseen``).

Used only to evaluate the report extractor and the triage judge on wording they were not developed
against (``labels.generalisation``); the pipeline's reports come from ``synth.reports``. Three house
styles: a structured template (compartment headings, numbered impression with recommendations), a
telegraphic one (bullet fragments, abbreviations), and long dictated prose (comparisons, communication
lines, addenda). Follow-up studies compare with the prior; resolved findings are stated as resolved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from neurovfm.synth import phrases_unseen as B
from neurovfm.synth.catalog import CATALOG

STYLES = ("structured", "telegraphic", "dictated")
_SIZE_MM = {"small": (3, 7), "medium": (7, 12), "large": (12, 20)}


@dataclass
class StudyText:
    """What writer B needs of a study (a cohort plan or a truth record)."""

    modality: str  # CT | MR
    findings: list[dict]  # {"kind", "side", "size", optional "shift_mm", "max_thickness_mm", "volume_ml"}
    resolved: list[dict] = field(default_factory=list)
    indication: str = ""
    follow_up: bool = False


@dataclass
class UnseenReport:
    text: str
    style: str
    distractor_classes: list[str]  # failure classes of the non-finding sentences it carries


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def _tidy(text: str) -> str:
    text = re.sub(r"[ \t]+", " ", text).strip()
    text = re.sub(r"\s+([.,;:)])", r"\1", text)
    text = text.replace("Bilateral-sided", "Bilateral").replace("bilateral-sided", "bilateral")
    return text[0].upper() + text[1:] if text else text


def slots(f: dict, rng, prior: str) -> dict:
    kind, side = f["kind"], f.get("side") or ""
    lo, hi = _SIZE_MM.get(f.get("size"), _SIZE_MM["medium"])
    mm = f.get("shift_mm") or f.get("max_thickness_mm") or float(rng.integers(lo, hi + 1))
    ml = f.get("volume_ml") or round(float(mm) ** 3 * np.pi / 6000, 1)
    cm = 2 * (3 * float(ml) / (4 * np.pi)) ** (1 / 3)
    out = {
        "side": side,
        "Side": side.capitalize(),
        "site": _pick(rng, B.SITES.get(kind, ("brain",))),
        "mm": f"{max(1, round(float(mm))):d}",
        "cm": f"{max(cm, 0.5):.1f}",
        "ml": f"{max(float(ml), 0.5):.0f}",
        "dir": "",
        "prior": prior,
    }
    if kind == "midline_shift":
        out.update(dir=side, side="", Side="")
    return out


def _eligible(table, present: set[str], modality: str):
    return [row for row in table if not (row[1] & present) and row[2] in (None, modality)]


def _order(findings: list[dict]) -> list[dict]:
    return sorted(findings, key=lambda f: CATALOG[f["kind"]].triage != "urgent")


def write_unseen_report(study: StudyText, rng: np.random.Generator) -> UnseenReport:
    style = STYLES[int(rng.integers(len(STYLES)))]
    modality = study.modality
    prior = _pick(rng, ("the previous study", "the prior examination", "the last scan")) if study.follow_up else ""
    findings = _order(study.findings)
    slot = {id(f): slots(f, rng, prior or "the previous study") for f in findings}
    present = {f["kind"] for f in findings}

    sentences: dict[int, list[str]] = {}
    for f in findings:
        s = [
            _tidy(p.format(**slot[id(f)])) + ("" if p.endswith(".") else ".")
            for p in _pick(rng, B.PRESENT[f["kind"]]).split("|")
        ]
        if study.follow_up and rng.random() < 0.6:
            table = B.WORSE if CATALOG[f["kind"]].triage == "urgent" else B.STABLE
            s.append(_tidy(_pick(rng, table).format(prior=prior)))
        sentences[id(f)] = s
    resolved = []
    for f in study.resolved:
        name = B.NAMES.get(f["kind"])
        if name:
            resolved.append(
                _tidy(
                    _pick(rng, B.RESOLVED).format(
                        side=f.get("side") or "", name=name, prior=prior or "the previous study"
                    )
                )
            )
    negs = _eligible(B.NEGATIVES, present, modality)
    negatives = [negs[i][0] for i in rng.permutation(len(negs))[: int(rng.integers(1, 4))]]
    dis = _eligible(B.DISTRACTORS, present, modality)
    chosen = [dis[i] for i in rng.permutation(len(dis))[: int(rng.integers(0, 3))]]
    fill = [t for t, m in B.FILLER if m in (None, modality)]
    filler = [fill[i] for i in rng.permutation(len(fill))[: int(rng.integers(0, 2))]]
    impression = [_tidy(B.TELEGRAPHIC[f["kind"]].format(**slot[id(f)])) for f in findings] or [_pick(rng, B.NORMAL)]

    writer = {"structured": _structured, "telegraphic": _telegraphic, "dictated": _dictated}[style]
    text = writer(
        rng, study, findings, sentences, resolved, negatives, [c[0] for c in chosen], filler, impression, prior
    )
    return UnseenReport(text=text, style=style, distractor_classes=[c[3] for c in chosen])


def _exam(study: StudyText) -> str:
    return "CT head without contrast" if study.modality == "CT" else "MRI brain"


def _structured(rng, study, findings, sentences, resolved, negatives, distractors, filler, impression, prior):
    lines = [
        f"EXAMINATION: {_exam(study)}",
        f"CLINICAL DETAILS: {study.indication or 'Not given.'}",
        f"COMPARISON: {prior.capitalize() if prior else 'None available.'}",
        "",
        "FINDINGS:",
    ]
    used = set()
    for heading, kinds in B.HEADINGS:
        body = [s for f in findings if f["kind"] in kinds for s in sentences[id(f)]]
        used |= {id(f) for f in findings if f["kind"] in kinds}
        if not body:
            body = [B.HEADING_NORMAL[heading]]
        if rng.random() < 0.5:
            lines += [f"{heading}:", " ".join(body)]
        else:
            lines.append(f"{heading}: {' '.join(body)}")
    rest = [s for f in findings if id(f) not in used for s in sentences[id(f)]]
    other = rest + resolved + negatives + filler
    if other:
        lines += ["OTHER:", " ".join(other)]
    lines += ["", "IMPRESSION:"]
    items = impression + distractors
    lines += [f"{i + 1}. {s}" for i, s in enumerate(items)]
    return "\n".join(lines) + "\n"


def _telegraphic(rng, study, findings, sentences, resolved, negatives, distractors, filler, impression, prior):
    body = [s for f in findings for s in sentences[id(f)]] + resolved + negatives + filler
    lines = [f"Exam: {_exam(study)}.", f"Hx: {study.indication or 'n/a'}", "Findings:"]
    lines += [f"- {s}" for s in body]
    lines += ["Impression:"] + [f"- {s}" for s in impression + distractors]
    return "\n".join(lines) + "\n"


def _dictated(rng, study, findings, sentences, resolved, negatives, distractors, filler, impression, prior):
    intro = f"Comparison is made with {prior}. " if prior else "No previous imaging is available for comparison. "
    body = [s for f in findings for s in sentences[id(f)]] + resolved + negatives + filler
    text = f"{_exam(study)}.\n\nClinical history: {study.indication or 'not provided'}\n\nReport: {intro}" + " ".join(
        body
    )
    summary = " ".join(impression)
    text += f"\n\nConclusion: {summary} " + " ".join(distractors)
    if rng.random() < 0.3:
        text += "\n\n" + _pick(rng, B.ADDENDA)
    return text.strip() + "\n"


def from_truth(record: dict) -> StudyText:
    """A truth record of the synthetic export as writer B's input."""
    return StudyText(
        modality="MR" if str(record["modality"]).upper() in ("MR", "MRI") else "CT",
        findings=[dict(f) for f in record.get("findings", [])],
        resolved=[dict(f) for f in record.get("resolved", [])],
        indication=str(record.get("indication") or ""),
        follow_up=bool(record.get("resolved")) or "follow" in str(record.get("indication", "")).lower(),
    )


def from_plan(plan) -> StudyText:
    """A cohort plan (``synth.cohort.StudyPlan``) as writer B's input."""
    return StudyText(
        modality=plan.modality,
        findings=[dict(f) for f in plan.findings],
        resolved=[dict(f) for f in plan.resolved],
        indication=plan.indication,
        follow_up=plan.scenario == "follow_up" and plan.prior_date is not None,
    )
