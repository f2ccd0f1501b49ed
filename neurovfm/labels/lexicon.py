"""Loads the extractor's synonym lexicon (``data/lexicon.yaml``) and context cues (``data/cues.yaml``).

Both are package data so that a site can extend them (local abbreviations, another language's
spellings) without touching code; they are validated against the ontologies on load.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

import yaml

from .ontology import load_ontology

_B0, _B1 = r"(?<![A-Za-z0-9])", r"(?![A-Za-z0-9])"


class LexiconError(ValueError):
    """A lexicon entry that names an unknown diagnosis or has a bad pattern."""


@dataclass(frozen=True)
class Concept:
    key: str
    pattern: re.Pattern  # all terms, one alternation
    targets: dict  # modality -> tuple of labels | ("@resolver", default or None)
    history_negates: bool
    treated_negates: bool  # a removed / treated lesion of this concept is not current disease


@dataclass(frozen=True)
class Cues:
    terminators: re.Pattern
    pseudo_negation: re.Pattern
    pre_negation: re.Pattern
    post_negation: re.Pattern
    pre_hedge: re.Pattern
    post_hedge: re.Pattern
    history_anywhere: re.Pattern
    history_adjacent: re.Pattern
    history_adjacent_words: int
    history_not_after: re.Pattern
    presence: re.Pattern
    hypothetical_lead: re.Pattern
    hypothetical_pre: re.Pattern
    team_after: re.Pattern
    treated_pre: re.Pattern
    treated_post: re.Pattern
    current: re.Pattern
    inner_negation: re.Pattern
    differential_glue: re.Pattern
    heading_max_words: int


def _alternation(terms, flags=re.IGNORECASE) -> re.Pattern:
    body = "|".join(f"(?:{t})" for t in terms)
    return re.compile(f"{_B0}(?:{body}){_B1}", flags)


def _read(name: str) -> dict:
    text = resources.files("neurovfm.labels").joinpath("data", name).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _target(spec, modality: str, key: str, resolvers) -> tuple:
    if not spec:
        return ()
    if isinstance(spec, str):
        if not spec.startswith("@"):
            raise LexiconError(f"concept {key}: {modality} target {spec!r} must be a list or '@resolver'")
        name, _, default = spec[1:].partition(":")
        if name not in resolvers:
            raise LexiconError(f"concept {key}: unknown resolver {name!r}")
        if default and default not in load_ontology(modality):
            raise LexiconError(f"concept {key}: default {default!r} is not a {modality} diagnosis")
        return ("@" + name, default or None)
    onto = load_ontology(modality)
    bad = [x for x in spec if x not in onto]
    if bad:
        raise LexiconError(f"concept {key}: {bad} are not {modality} diagnoses")
    return tuple(spec)


@functools.lru_cache(maxsize=None)
def load_concepts(resolver_names: frozenset) -> tuple[Concept, ...]:
    raw = _read("lexicon.yaml")["concepts"]
    out = []
    for key, c in raw.items():
        terms = [_alternation(c.get("terms") or []).pattern] if c.get("terms") else []
        if c.get("terms_cs"):
            cs = "|".join(f"(?:{t})" for t in c["terms_cs"])
            terms.append(f"(?-i:{_B0}(?:{cs}){_B1})")
        if not terms:
            raise LexiconError(f"concept {key} has no terms")
        pattern = re.compile("|".join(terms), re.IGNORECASE)
        history = c.get("history", "keep")
        if history not in ("negate", "keep"):
            raise LexiconError(f"concept {key}: history must be negate or keep, not {history!r}")
        treated = c.get("treated", "keep")
        if treated not in ("negate", "keep"):
            raise LexiconError(f"concept {key}: treated must be negate or keep, not {treated!r}")
        targets = {m: _target(c.get(m.lower()), m, key, resolver_names) for m in ("CT", "MR")}
        out.append(Concept(key, pattern, targets, history == "negate", treated == "negate"))
    return tuple(out)


@functools.lru_cache(maxsize=None)
def load_cues() -> Cues:
    raw = _read("cues.yaml")
    pats = {
        k: _alternation(raw[k])
        for k in (
            "pseudo_negation",
            "pre_negation",
            "post_negation",
            "pre_hedge",
            "post_hedge",
            "history_anywhere",
            "history_adjacent",
            "presence",
            "hypothetical_pre",
            "treated_pre",
            "treated_post",
            "current",
            "inner_negation",
        )
    }
    pats["hypothetical_lead"] = re.compile(r"^\W*" + _alternation(raw["hypothetical_lead"]).pattern, re.IGNORECASE)
    pats["team_after"] = re.compile(r"^\W{0,3}" + raw["team_after"] + _B1, re.IGNORECASE)
    pats["differential_glue"] = re.compile(raw["differential_glue"], re.IGNORECASE)
    # cues that start or end with punctuation ('?', ': none') rely on being matched against the clause
    # text before / after the mention as a separate string (the word-boundary guards then hold)
    terminators = re.compile(r";|" + _alternation(raw["terminators"]).pattern, re.IGNORECASE)
    return Cues(
        terminators=terminators,
        history_adjacent_words=int(raw["history_adjacent_words"]),
        heading_max_words=int(raw["heading_max_words"]),
        history_not_after=re.compile(r"\s+" + raw["history_not_after"] + _B1, re.IGNORECASE),
        **pats,
    )
