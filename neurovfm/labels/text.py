"""Report text structure: sections (indication, findings, impression, ...) and sentences.

Section headers are recognised at the start of a line in any case ("Findings:"), as a line of their
own without a colon ("FINDINGS"), or anywhere when written in capitals with a colon ("... IMPRESSION: ..."),
because exports often flatten a report onto one line.
Text before the first header counts as findings (many short reports have no headers at all).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# header words -> section kind; only findings and impression carry diagnoses
SECTION_ALIASES = {
    "findings": "findings",
    "finding": "findings",
    "report": "findings",
    "body": "findings",
    "description": "findings",
    "observations": "findings",
    "impression": "impression",
    "impressions": "impression",
    "conclusion": "impression",
    "conclusions": "impression",
    "summary": "impression",
    "opinion": "impression",
    "interpretation": "impression",
    "assessment": "impression",
    "diagnosis": "impression",
    "indication": "indication",
    "indications": "indication",
    "clinical indication": "indication",
    "clinical history": "indication",
    "history": "indication",
    "clinical information": "indication",
    "clinical details": "indication",
    "clinical": "indication",
    "reason for exam": "indication",
    "reason for study": "indication",
    "reason for examination": "indication",
    "reason": "indication",
    "clinical question": "indication",
    "presenting complaint": "indication",
    "comparison": "comparison",
    "comparisons": "comparison",
    "prior studies": "comparison",
    "technique": "technique",
    "procedure": "technique",
    "protocol": "technique",
    "exam": "technique",
    "examination": "technique",
    "contrast": "technique",
    "dose": "technique",
    "sequences": "technique",
    "addendum": "impression",
}
DIAGNOSTIC_SECTIONS = ("findings", "impression")

_HEADER_WORDS = "|".join(sorted((re.escape(k) for k in SECTION_ALIASES), key=len, reverse=True))
_HEADER_LINE = re.compile(rf"(?im)^[ \t]*(?P<h>{_HEADER_WORDS})[ \t]*:")
_HEADER_ALONE = re.compile(rf"(?im)^[ \t]*(?P<h>{_HEADER_WORDS})[ \t]*:?[ \t]*$")
_HEADER_CAPS = re.compile(rf"(?<![A-Za-z])(?P<h>{_HEADER_WORDS.upper()})[ \t]*:")

# abbreviations whose period does not end a sentence
ABBREVIATIONS = (
    "approx",
    "dr",
    "i.e",
    "e.g",
    "vs",
    "etc",
    "cf",
    "fig",
    "mr",
    "mrs",
    "st",
    "incl",
    "resp",
    "pt",
    "pts",
    "hx",
    "sx",
    "dx",
    "tx",
    "ca",
    "al",
    "prox",
    "ant",
    "sup",
    "lat",
    "med",
    "ext",
    "u.s",
    "viz",
)
# abbreviations that only continue the sentence before a number ("No. 3", "Fig. 2")
NUMBER_ABBREVIATIONS = ("no", "nos", "fig", "ref")


@dataclass(frozen=True)
class Section:
    kind: str  # findings | impression | indication | comparison | technique
    text: str
    start: int  # character offset in the report


def split_sections(report: str) -> list[Section]:
    """Sections in report order; text before any header is ``findings``."""
    report = report or ""
    hits = {}
    for rx in (_HEADER_LINE, _HEADER_ALONE, _HEADER_CAPS):
        for m in rx.finditer(report):
            hits.setdefault(m.start("h"), m)
    marks = sorted(hits.values(), key=lambda m: m.start("h"))
    out: list[Section] = []
    pos, kind = 0, "findings"
    for m in marks:
        if m.start("h") < pos:
            continue
        chunk = report[pos : m.start("h")]
        if chunk.strip():
            out.append(Section(kind, chunk.strip(), pos))
        kind = SECTION_ALIASES[m.group("h").lower()]
        pos = m.end()
    tail = report[pos:]
    if tail.strip():
        out.append(Section(kind, tail.strip(), pos))
    return out


_ABBREV_RX = re.compile(r"(?i)(?<![A-Za-z])(?:" + "|".join(re.escape(a) for a in ABBREVIATIONS) + r")\.$")
_NUM_ABBREV_RX = re.compile(r"(?i)(?<![A-Za-z])(?:" + "|".join(NUMBER_ABBREVIATIONS) + r")\.$")
_LIST_MARK = re.compile(r"(?m)^\s*(?:\d{1,2}[.)]|[-*\u2022]|[a-z][.)])\s+")
_INLINE_NUM = re.compile(r"(?<=[.;:])\s+\d{1,2}[.)]\s+(?=[A-Z])")


def split_sentences(text: str) -> list[str]:
    """Sentences of a section: ends at . ! ? (not in decimals or abbreviations), list markers and line
    breaks that start a new item."""
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"(?<=[A-Za-z])-[ \t]*\n[ \t]*(?=[A-Za-z])", "-", text)  # a word hyphenated across a line break
    text = re.sub(
        r"(?i)\b(non|un|post|pre|intra|extra|sub|peri|para|hyper|hypo|iso|mid|semi|re)-[ \t]+(?=[a-z])", r"\1-", text
    )  # "non- displaced": a stray space after a prefix hyphen
    text = _INLINE_NUM.sub("\n", text)
    pieces: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln for ln in block.split("\n")]
        buf = ""
        for ln in lines:
            if _LIST_MARK.match(ln):
                if buf.strip():
                    pieces.append(buf)
                buf = _LIST_MARK.sub("", ln, count=1)
            elif buf and re.search(r"[.!?:]\s*$", buf):
                pieces.append(buf)
                buf = ln
            else:
                buf = f"{buf} {ln}" if buf else ln
        if buf.strip():
            pieces.append(buf)
    out: list[str] = []
    for piece in pieces:
        out.extend(_split_on_periods(" ".join(piece.split())))
    return [s for s in (x.strip() for x in out) if s and re.search(r"[A-Za-z]", s)]


def _split_on_periods(s: str) -> list[str]:
    out, start = [], 0
    for m in re.finditer(r"[.!?]+(?=\s+|$)", s):
        end = m.end()
        cand = s[start:end]
        if m.group().startswith(".") and len(m.group()) == 1:
            nxt = s[end:].lstrip()
            if _ABBREV_RX.search(cand) or (_NUM_ABBREV_RX.search(cand) and nxt[:1].isdigit()):
                continue
            if re.search(r"(?i)(?<![A-Za-z])(?:i\.e|e\.g)\.$", cand):
                continue
            if nxt[:1].islower():
                continue  # lower-case continuation: not a sentence start
        out.append(cand)
        start = end
    if s[start:].strip():
        out.append(s[start:])
    return out
