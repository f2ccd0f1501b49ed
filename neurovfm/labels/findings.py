"""Structured key findings of a report (offline rules).

Items are the findings / impression sentences (split at ';') that state something abnormal: a
positive diagnosis mention, or abnormal wording the lexicon does not know (unless called nonspecific,
incidental, artifact or only possible). Removed: normal /
unremarkable statements, negated tails ("..., without midline shift"), comparison phrases ("compared
to the prior study"), bare measurements, and an impression item that restates a finding already
kept. Ordered by urgency (an urgent diagnosis of the ontology first), then by report order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .ontology import load_ontology, normalise_modality
from .resolvers import ACUTE, CHRONIC
from .rules import RuleExtractor
from .text import DIAGNOSTIC_SECTIONS, split_sections, split_sentences

_NORMAL = re.compile(
    r"(?i)\b(?:unremarkable|normal|within normal limits|no acute|intact|preserved|patent|clear|"
    r"symmetric|midline|age[- ]appropriate|negative|no (?:significant|abnormal|evidence)|grossly)\b"
)
_ABNORMAL = re.compile(
    r"(?i)\b(?:lesions?|abnormal\w*|enhanc\w+|hyperintens\w*|hypointens\w*|hyperdens\w*|hypodens\w*|"
    r"thicken\w*|collections?|nodul\w+|opacif\w*|signal abnormalit\w+|restrict\w*|calcifi\w+|"
    r"enlarg\w+|narrow\w*|stenos\w+|focus|foci|cyst\w*|deformit\w+|erosion|destruct\w+)\b"
)
_NOT_KEY = re.compile(
    r"(?i)\b(?:non-?specific|incidental|artifacts?|artefacts?|normal variants?|of no clinical significance|"
    r"questionable|possible|equivocal|indeterminate|cannot be excluded|may represent|nonspecific)\b"
)
_NEGATION_WORD = re.compile(r"(?i)\b(?:no|not|without|negative|free of|resolved|absent)\b")
_COMPARISON_LEAD = re.compile(
    r"(?i)^\s*(?:(?:as )?compared (?:to|with)|in comparison (?:to|with)|relative to|since|"
    r"when compared (?:to|with))\s+(?:the\s+)?(?:prior|previous|most recent|recent|last)\b[^,]*,\s*"
)
_COMPARISON_TAIL = re.compile(
    r"(?i),?\s*(?:(?:not significantly |essentially |grossly )?(?:unchanged|stable|similar|"
    r"increased|decreased|improved|worsened|changed)\s+)?(?:from|since|compared (?:to|with)|"
    r"relative to|versus|when compared (?:to|with))\s+(?:the\s+)?(?:prior|previous|most recent|"
    r"recent|last)\b(?:\s+(?:study|exam|examination|ct|mri|mr|scan|imaging))?(?:\s+(?:of|from|dated|on)\s+"
    r"[\w/.-]+)?"
)
_PURE_COMPARISON = re.compile(
    r"(?i)^\s*(?:comparison|compared|no (?:significant |interval )?change|unchanged|stable|"
    r"similar (?:appearance|to prior))\b"
)
_MEASUREMENT = re.compile(
    r"(?i)^(?:(?:it |this |the lesion |which )?(?:measures?|measuring|measured)?\s*(?:approx(?:imately|\.)?|up to|about)?"
    r"\s*[\d.]+\s*(?:x|×|by)?\s*)+(?:mm|cm|ml|cc|hu|%)?\W*$"
)
_NEGATED_TAIL = re.compile(
    r"(?i)(?:,|;)?\s*\b(?:without|with no|and no|but no|no evidence of|no associated|no significant|"
    r"no)\b"
)


def _acuity(text: str) -> str:
    return "acute" if ACUTE.search(text) else "chronic" if CHRONIC.search(text) else ""


@dataclass
class _Item:
    text: str
    order: int
    rank: int
    label_key: frozenset


def _clean(item: str) -> str:
    item = _COMPARISON_LEAD.sub("", item)
    item = _COMPARISON_TAIL.sub("", item)
    item = re.sub(r"\s+([,.;])", r"\1", item).strip(" ,;")
    if not item:
        return ""
    item = item[0].upper() + item[1:]
    return item if item.endswith((".", "?", "!")) else item + "."


class FindingsExtractor:
    def __init__(self, extractor: RuleExtractor | None = None):
        self.rules = extractor or RuleExtractor()

    def _item(self, text: str, modality: str, section: str, report_ctx: str, order: int) -> _Item | None:
        onto = load_ontology(modality)
        mentions = self.rules.mentions(text, modality, section, report_ctx)
        positive = [m for m in mentions if m.status == "positive" and m.labels]
        if positive:
            last_pos_end = max(text.find(m.text) + len(m.text) for m in positive)
            for tail in _NEGATED_TAIL.finditer(text):
                if tail.start() >= last_pos_end:
                    text = text[: tail.start()]
                    break
            labels = {lab for m in positive for lab in m.labels}
            rank = 0 if any(onto[lab].urgent for lab in labels) else 1
            # acuity is part of what an item says: an acute and a chronic subdural hematoma share the MRI label
            # but are two findings, not a finding and its restatement
            key = frozenset((lab, m.side, _acuity(m.local or m.text)) for m in positive for lab in m.labels)
        else:
            if (
                mentions
                or _NEGATION_WORD.search(text)
                or _NORMAL.search(text)
                or _PURE_COMPARISON.match(text)
                or _NOT_KEY.search(text)
                or not _ABNORMAL.search(text)
            ):
                return None
            rank, key = 2, frozenset()
        text = _clean(text)
        if not text or _MEASUREMENT.match(text):
            return None
        return _Item(text, order, rank, key)

    def extract(self, report_text: str, modality: str, indication: str = "") -> list[str]:
        modality = normalise_modality(modality)
        sections = [s for s in split_sections(report_text) if s.kind in DIAGNOSTIC_SECTIONS]
        sections.sort(key=lambda s: DIAGNOSTIC_SECTIONS.index(s.kind))  # findings before impression
        report_ctx = " ".join([indication or ""] + [s.text for s in sections])
        kept: list[_Item] = []
        seen_text: set[str] = set()
        order = 0
        for sec in sections:
            for sentence in split_sentences(sec.text):
                for part in sentence.split(";"):
                    if not part.strip():
                        continue
                    order += 1
                    item = self._item(part.strip(), modality, sec.kind, report_ctx, order)
                    if item is None:
                        continue
                    norm = re.sub(r"[^a-z0-9]+", " ", item.text.lower()).strip()
                    if norm in seen_text:
                        continue
                    if item.label_key and any(item.label_key <= k.label_key for k in kept):
                        continue  # restates a finding already kept (typically the impression)
                    seen_text.add(norm)
                    kept.append(item)
        kept.sort(key=lambda it: (it.rank, it.order))
        return [it.text for it in kept]


def laterality(result: dict[str, dict]) -> dict[str, str]:
    """{diagnosis: side} for the present diagnoses that the report lateralises."""
    return {k: v["side"] for k, v in result.items() if v["present"] and v.get("side")}
