"""Series classification from header text: localizer/derived exclusion, contrast, sequence family.

Keyword rules on SeriesDescription, like the paper's (counts are approximate by nature). Descriptions
are normalised to lower case with punctuation other than ``+ * /`` turned into spaces, and every
keyword must match at word boundaries (so ``mpr`` does not match ``mprage``).

ImageType: ``LOCALIZER`` anywhere -> localizer; the pair ``DERIVED`` + ``SECONDARY`` (reformats,
MIPs, screenshots made after the exam) -> derived. ``DERIVED\\PRIMARY`` is kept, because scanners
label trace-weighted diffusion that way; parametric maps are caught by their ImageType value
(``ADC``, ``FA``, ``EADC``, ``EXP``) or by description patterns. Philips-style prefixes of the
orientation letter (``sT1W``, ``aT2W``) count as T1/T2.
"""

from __future__ import annotations

import re
from functools import lru_cache

DERIVED_MAP_TYPES = frozenset({"ADC", "FA", "EADC", "EXP", "TRACE_ADC"})
LOCALIZER_PATTERNS = ("scout", "locali[sz]er", "topogram", "survey", "3 plane", "tri plane", "3plane")

_DWI = ("dwi", "diff", "diffusion", "dti", "trace", "tracew", "ep2d diff", "b1000", "b 1000")
_SWI = ("swi", "swan", "susc", "susceptibility", r"t2\*", "t2star", "t2 star", "hemo", "mpgr", "swip", "venobold")
_GRE = ("gre", "fl2d", "ffe", "gradient echo")
_FLAIR = ("flair", "dark fluid", "tirm", "t2fl")
_T1 = (r"[astc]?t1w?", "mprage", "mp rage", "spgr", "fspgr", "bravo", "tfl", "vibe", "tfe", "t1 se", "t1tse")
_T2 = (r"[astc]?t2w?", "tse", "fse", "haste", "ssfse", "propeller", "blade", "ciss", "fiesta")
_CONTRAST_YES = (
    r"post",
    r"\+c",
    r"c\+",
    r"w contrast",
    r"w/ ?contrast",
    r"with",
    r"gad",
    r"gd",
    r"contrast",
    r"cta",
    r"angio",
    r"cect",
    r"postcontrast",
    r"enhanced",
    r"w/",
)
_CONTRAST_NO = (
    r"wo",
    r"w/o",
    r"without",
    r"non ?con",
    r"noncontrast",
    r"non contrast",
    r"pre",
    r"precontrast",
    r"plain",
    r"unenhanced",
)
_NO_AGENT = {"", "none", "no", "n/a", "na", "0"}


def normalise(text: str | None) -> str:
    t = (text or "").lower()
    t = re.sub(r"[^a-z0-9+*/]+", " ", t)
    return f" {t.strip()} "


@lru_cache(maxsize=64)
def _compile(patterns: tuple[str, ...]) -> re.Pattern:
    joined = "|".join(f"(?:{p})" for p in patterns)
    return re.compile(rf"(?<![a-z0-9])(?:{joined})(?![a-z0-9])")


def matches(text: str, patterns) -> bool:
    return bool(patterns) and _compile(tuple(patterns)).search(text) is not None


def exclusion_reason(
    description: str | None, image_type, exclude_patterns, localizer_patterns=LOCALIZER_PATTERNS
) -> tuple[str | None, str]:
    """(``localizer`` | ``derived`` | None, detail) for a series."""
    itype = [str(v).upper() for v in (image_type or ())]
    desc = normalise(description)
    if "LOCALIZER" in itype:
        return "localizer", "ImageType LOCALIZER"
    if matches(desc, localizer_patterns):
        return "localizer", "description names a localizer/scout"
    if len(itype) >= 2 and itype[0] == "DERIVED" and itype[1] == "SECONDARY":
        return "derived", "ImageType DERIVED\\SECONDARY"
    if itype and itype[0] == "DERIVED" and DERIVED_MAP_TYPES.intersection(itype):
        return "derived", "ImageType names a parametric map"
    pats = [normalise(p).strip() if not any(ch in p for ch in "?*[]()\\|") else p for p in exclude_patterns]
    if matches(desc, pats):
        return "derived", "description matches an excluded pattern"
    return None, ""


def has_contrast(description: str | None, contrast_agent: str | None) -> bool:
    """Contrast given: a ContrastBolusAgent value, else description keywords (negations win)."""
    if contrast_agent and contrast_agent.strip().lower() not in _NO_AGENT:
        return True
    desc = normalise(description)
    if matches(desc, _CONTRAST_NO):
        return False
    return matches(desc, _CONTRAST_YES)


def sequence_family(
    modality: str,
    description: str | None,
    contrast_agent: str | None = None,
    b_value: float | None = None,
    scanning_sequence=(),
) -> str:
    """One of ct, ct_contrast, t1, t1c, t2, flair, dwi, swi, other."""
    contrast = has_contrast(description, contrast_agent)
    if modality == "CT":
        return "ct_contrast" if contrast else "ct"
    desc = normalise(description)
    seq = {str(s).upper() for s in (scanning_sequence or ())}
    is_t1 = matches(desc, _T1)
    if (b_value is not None and b_value > 0) or matches(desc, _DWI):
        return "dwi"
    if matches(desc, _SWI) or (matches(desc, _GRE) and not is_t1):
        return "swi"
    if matches(desc, _FLAIR) and not is_t1:
        return "flair"
    if is_t1:
        return "t1c" if contrast else "t1"
    if matches(desc, _T2):
        return "flair" if {"IR", "SE"} <= seq else "t2"
    return "other"
