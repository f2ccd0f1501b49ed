"""Rule-based diagnosis extractor (the default, fully offline).

Pipeline per report: sections (only findings / impression count) -> sentences -> concept mentions
from the lexicon (longest match wins) -> context of each mention within its clause (NegEx-style
negation, hedging, history, hypothetical statements, treated disease; policy in ``data/cues.yaml``) ->
diagnosis names via the lexicon or a resolver (acuity, site, cause) -> laterality (a shift's side is its
direction) -> parents by implication, with their children's sides. Short lines ending in a colon are headings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .lexicon import Concept, load_concepts, load_cues
from .ontology import load_ontology, normalise_modality
from .resolvers import RESOLVERS, Context
from .text import DIAGNOSTIC_SECTIONS, split_sections, split_sentences

_SIDE = re.compile(
    r"(?i:(?<![A-Za-z])(?:left|right)[- ]to[- ](?P<to>left|right)(?![A-Za-z]))"
    r"|(?i:(?<![A-Za-z])(?P<bi>bilateral(?:ly)?|both (?:sides|hemispheres|cerebral|lateral|frontal|parietal|temporal|occipital|cerebellar)"
    r"|bi(?:frontal|parietal|temporal|occipital|hemispheric|convexity|lateral)|symmetric(?:al)?(?:ly)?)(?![A-Za-z]))"
    r"|(?i:(?<![A-Za-z])(?P<side>left|right)(?:ward|-sided| sided)?(?![A-Za-z]))"
    r"|(?<![A-Za-z0-9])(?P<abbr>[LR])(?![A-Za-z0-9-])"
)
_ATTRIBUTION = re.compile(
    r"(?:consistent with|compatible with|in keeping with|suggestive of|suspicious for|concerning for|"
    r"representing|likely|probably|most likely|reflecting|characteristic of|typical of|due to|from)\s*(?:an? |the )?"
    r"(?:\w+ ){0,2}$",
    re.IGNORECASE,
)
_LIST_GLUE = re.compile(r"^[\s,/]*(?:(?:and|or|and/or|nor)\b)?[\s,/]*$", re.IGNORECASE)


@dataclass
class Mention:
    concept: str
    text: str
    sentence: str
    section: str
    status: str  # positive | negated | hedged | historical | hypothetical | treated
    labels: tuple[str, ...]
    side: str | None
    local: str = ""  # the mention's own stretch of its clause (for acuity cues)


def _find_spans(sentence: str, concepts) -> list[tuple[int, int, Concept]]:
    spans = [(m.start(), m.end(), c) for c in concepts for m in c.pattern.finditer(sentence) if m.end() > m.start()]
    spans.sort(key=lambda t: (-(t[1] - t[0]), t[0]))
    kept: list[tuple[int, int, Concept]] = []
    for s, e, c in spans:
        if not any(ks <= s and e <= ke for ks, ke, _ in kept):
            kept.append((s, e, c))
    return sorted(kept, key=lambda t: t[0])


def _mask(text: str, rx: re.Pattern) -> str:
    return rx.sub(lambda m: " " * len(m.group()), text)


def _clause_bounds(sentence: str, start: int, end: int, cues) -> tuple[int, int]:
    lo, hi = 0, len(sentence)
    for m in cues.terminators.finditer(sentence):
        if m.end() <= start:
            lo = max(lo, m.end())
        elif m.start() >= end:
            hi = min(hi, m.start())
            break
    return lo, hi


SHIFT_CONCEPTS = frozenset({"midline_shift"})  # their side is the direction of the shift, not a lesion's side
_DIRECTION = re.compile(
    r"(?i)(?<![A-Za-z])(?:(?:left|right)[- ]to[- ](?P<to>left|right)|(?P<ward>left|right)[- ]?wards?|"
    r"(?:to|toward|towards|into) the (?P<dir>left|right))(?![A-Za-z])"
)
_ANAPHOR = re.compile(
    r"(?i)^\W*(?:this|these|it|they|the (?:appearances?|findings?|lesion|mass|features?)|appearances?|"
    r"findings?|features?)\b"
)
_HEADING = re.compile(r"^[^.;!?]*:\s*$")


def _is_heading(sentence: str, max_words: int) -> bool:
    return bool(_HEADING.match(sentence)) and len(sentence.split()) <= max_words


def shift_direction(sentence: str, lo: int, hi: int) -> str | None:
    """Direction of a shift in ``sentence[lo:hi]`` ("to the left", "rightward", "left-to-right")."""
    for m in _DIRECTION.finditer(sentence, lo, hi):
        return (m.group("to") or m.group("ward") or m.group("dir")).lower()
    return None


def _side_near(sentence: str, lo: int, hi: int, start: int, end: int) -> str | None:
    directions = [(m.start(), m.end()) for m in _DIRECTION.finditer(sentence, lo, hi)]
    found = []
    for m in _SIDE.finditer(sentence, lo, hi):
        if any(ds <= m.start() < de for ds, de in directions):
            continue  # "shift to the left": a direction, not the side of this lesion
        found.append(m)
    for part in ([m for m in found if m.end() <= start], [m for m in found if m.start() >= end]):
        # "collections over the left frontal and right parietal convexities": both sides on one side of the noun,
        # joined by "and", make it bilateral (a side before and another after belong to different things)
        words = [(m.group("side") or "").lower() for m in part]
        if "left" in words and "right" in words:
            a, b = part[words.index("left")], part[words.index("right")]
            first, second = (a, b) if a.start() < b.start() else (b, a)
            if re.search(r"(?i)\b(?:and|&)\b", sentence[first.end() : second.start()]):
                return "bilateral"
    best, best_d = None, None
    for m in found:
        if start <= m.start() < end:
            d = 0
        elif m.end() <= start:
            d = start - m.end()
        elif m.start() >= end:
            d = 1.5 * (m.start() - end)  # words before the noun usually qualify it
        else:
            continue
        if m.group("to"):
            side = m.group("to").lower()
        elif m.group("bi"):
            side = "bilateral"
        elif m.group("side"):
            side = m.group("side").lower()
        else:
            side = {"L": "left", "R": "right"}[m.group("abbr")]
        if best_d is None or d < best_d:
            best, best_d = side, d
    return best


class RuleExtractor:
    """``extract(report_text, modality, indication)`` -> ``{label: {present, side, evidence, status}}``."""

    def __init__(self):
        self.concepts = load_concepts(frozenset(RESOLVERS))
        self.cues = load_cues()

    # -- mentions --------------------------------------------------------------------------
    def _status(
        self,
        concept: Concept,
        sentence: str,
        lo: int,
        hi: int,
        s: int,
        e: int,
        post_end: int,
        glue_end: int,
        prev_gap: str | None,
    ) -> str:
        cues = self.cues
        pre = _mask(sentence[lo:s], cues.pseudo_negation)
        post = _mask(sentence[e:post_end], cues.pseudo_negation)
        raw_pre = sentence[lo:s]
        raw_post = sentence[e:post_end]
        if cues.inner_negation.search(sentence, s, e):
            return "negated"  # "the sulci are not abnormally widened": the negation sits inside the term
        if (
            cues.hypothetical_lead.match(sentence)
            or cues.hypothetical_pre.search(raw_pre)
            or cues.team_after.match(sentence, e)
        ):
            return "hypothetical"  # a recommendation, a conditional, a communication line, a team's name
        if (
            cues.pre_hedge.search(raw_pre)
            or cues.post_hedge.search(raw_post)
            or raw_pre.rstrip().endswith("?")
            or raw_post.lstrip().startswith("?")
            or (prev_gap is not None and cues.differential_glue.match(prev_gap))
        ):
            if not cues.pre_negation.search(pre):
                return "hedged"
        if (
            cues.pre_negation.search(pre)
            or cues.post_negation.search(post)
            or (glue_end > e and cues.post_negation.search(_mask(sentence[glue_end:post_end], cues.pseudo_negation)))
        ):
            return "negated"
        if concept.history_negates and self._historical(sentence[lo:s], sentence[lo:hi]):
            return "historical"
        if (
            concept.treated_negates
            and (cues.treated_pre.search(raw_pre) or cues.treated_post.search(raw_post))
            and not self._current(sentence[lo:hi])
        ):
            return "treated"
        return "positive"

    def _current(self, clause: str) -> bool:
        """A cue that some of the disease is there now ("residual", "recurrent"), not itself negated."""
        for m in self.cues.current.finditer(clause):
            if not self.cues.pre_negation.search(" ".join(clause[: m.start()].split()[-3:])):
                return True
        return False

    def _historical(self, pre: str, clause: str) -> bool:
        cues = self.cues
        if cues.presence.search(clause):
            return False
        if cues.history_anywhere.search(pre):
            return True
        words = pre.split()
        tail = " ".join(words[-cues.history_adjacent_words :]) if words else ""
        for m in cues.history_adjacent.finditer(tail):
            if not cues.history_not_after.match(tail, m.end()):
                return True
        return False

    def mentions(self, sentence: str, modality: str, section: str, report_ctx: str) -> list[Mention]:
        if _is_heading(sentence, self.cues.heading_max_words):
            return []
        spans = _find_spans(sentence, self.concepts)
        out = []
        for i, (s, e, concept) in enumerate(spans):
            lo, hi = _clause_bounds(sentence, s, e, self.cues)
            # the mention's own stretch ends at the next mention, unless only list glue lies between
            j, post_end, glue_end = i + 1, hi, e
            while j < len(spans) and spans[j][0] < hi:
                if _LIST_GLUE.match(sentence[spans[j - 1][1] : spans[j][0]]):
                    glue_end = spans[j][1]
                    j += 1
                    continue
                post_end = spans[j][0]
                break
            prev_gap = sentence[spans[i - 1][1] : s] if i and spans[i - 1][1] >= lo else None
            status = self._status(concept, sentence, lo, hi, s, e, max(post_end, e), glue_end, prev_gap)
            prev_end = max([pe for ps, pe, _ in spans[:i] if pe <= s and ps >= lo] or [lo])
            next_start = min([ps for ps, _, _ in spans[i + 1 :] if ps >= e] + [hi])
            local_end = next_start
            neg = self.cues.pre_negation.search(sentence, e, local_end)
            if neg:
                local_end = neg.start()
            ctx = Context(
                mention=sentence[s:e],
                local=sentence[prev_end:local_end],
                sentence=sentence,
                report=report_ctx,
                default=None,
            )
            labels = self._labels(concept, modality, ctx)
            w_lo, w_hi = max(lo, prev_end), max(min(hi, next_start), e)
            if concept.key in SHIFT_CONCEPTS:
                side = shift_direction(sentence, w_lo, w_hi)
            else:
                side = _side_near(sentence, w_lo, w_hi, s, e)
            if side is None and _ATTRIBUTION.search(sentence[max(lo, prev_end) : s]):
                # "... mass in the right temporal lobe, consistent with glioblastoma": the diagnosis names
                # a lesion described earlier in the sentence; it inherits that lesion's side
                side = next((m.side for m in reversed(out) if m.side and m.concept not in SHIFT_CONCEPTS), None)
            if side is None and concept.key not in SHIFT_CONCEPTS:
                # "... infarct with encephalomalacia": a mention joined to a sided one in the same clause shares it
                side = next(
                    (
                        m.side
                        for m, (ms, _, _) in zip(reversed(out), reversed(spans[:i]))
                        if m.side and ms >= lo and m.concept not in SHIFT_CONCEPTS
                    ),
                    None,
                )
            # a mention right before this one, with only a space between, qualifies it ("postoperative blood
            # products"): the stretch read for acuity cues starts there
            a_lo = next((ps for ps, pe, _ in spans[:i] if pe >= lo and not sentence[pe:s].strip(" -")), w_lo)
            out.append(
                Mention(
                    concept.key,
                    sentence[s:e],
                    sentence,
                    section,
                    status,
                    tuple(labels),
                    side,
                    sentence[min(a_lo, w_lo) : w_hi],
                )
            )
        return out

    @staticmethod
    def _labels(concept: Concept, modality: str, ctx: Context) -> list[str]:
        target = concept.targets[modality]
        if not target:
            return []
        if target[0].startswith("@"):
            ctx = Context(ctx.mention, ctx.local, ctx.sentence, ctx.report, target[1])
            return list(RESOLVERS[target[0][1:]](modality, ctx))
        return list(target)

    # -- report ------------------------------------------------------------------------------
    def report_mentions(self, report_text: str, modality: str, indication: str = "") -> list[Mention]:
        modality = normalise_modality(modality)
        sections = [s for s in split_sections(report_text) if s.kind in DIAGNOSTIC_SECTIONS]
        report_ctx = " ".join([indication or ""] + [s.text for s in sections])
        out = []
        for sec in sections:
            last_side = None
            for sentence in split_sentences(sec.text):
                found = self.mentions(sentence, modality, sec.kind, report_ctx)
                if last_side and _ANAPHOR.match(sentence):
                    # "Necrotic left temporal mass. The appearance suggests glioblastoma.": the diagnosis names
                    # the lesion of the sentence before, and takes its side
                    for m in found:
                        if m.side is None and m.concept not in SHIFT_CONCEPTS:
                            m.side = last_side
                sided = [m.side for m in found if m.side and m.concept not in SHIFT_CONCEPTS]
                last_side = sided[-1] if sided else (last_side if not found else None)
                out.extend(found)
        return out

    def extract(self, report_text: str, modality: str, indication: str = "") -> dict[str, dict]:
        modality = normalise_modality(modality)
        onto = load_ontology(modality)
        mentions = self.report_mentions(report_text, modality, indication)
        result = {n: {"present": False, "side": None, "evidence": None, "status": "absent"} for n in onto.names}
        sides: dict[str, set] = {}
        for m in mentions:
            for label in m.labels:
                r = result[label]
                if m.status == "positive":
                    if r["status"] != "positive":
                        r.update(present=True, status="positive", evidence=m.sentence)
                    if m.side:
                        sides.setdefault(label, set()).add(m.side)
                elif r["status"] == "absent":
                    r.update(status=m.status, evidence=m.sentence)
        positives = [n for n, r in result.items() if r["present"]]
        for child in positives:
            for parent in onto.ancestors(child):
                r = result[parent]
                if not r["present"]:
                    r.update(present=True, status="implied", evidence=result[child]["evidence"])
        # a parent takes the sides of its children when the report gives it none of its own
        for child in sorted(sides, key=lambda n: -len(onto.ancestors(n))):
            for parent in onto.ancestors(child):
                if parent not in sides or result[parent]["status"] == "implied":
                    sides.setdefault(parent, set()).update(sides[child])
        for label, ss in sides.items():
            result[label]["side"] = "bilateral" if ("bilateral" in ss or {"left", "right"} <= ss) else next(iter(ss))
        return result


def positive_labels(result: dict[str, dict]) -> set[str]:
    return {k for k, v in result.items() if v["present"]}
