"""Triage judges: findings + indication -> unremarkable / routine / urgent.

``RuleJudge`` (offline, the default): the rule-based report extractor reads the findings (the indication is
given to it as context, as it is for report labelling); of the positively stated diagnoses only the most
specific are kept (a generic parent such as ``brain_tumor`` yields to ``meningioma``). A diagnosis flagged urgent
in the ontology makes the study urgent unless acuity modifiers in its own stretches of text (all its mentions in
one sentence) say otherwise
(``reportgen.triage`` in config.yaml): an upgrade cue ("new", "acute", "increased") keeps it urgent; otherwise a
downgrade cue ("chronic", "stable", "expected", "postoperative", "treated") makes it routine; a named normal
variant (``variant_cues``) is not a finding at all. Routine if there is any finding, else unremarkable.

``LLMJudge``: any OpenAI-compatible chat endpoint with a fixed prompt (the transport, retries, backoff and
timeouts of ``neurovfm.labels.llm``); the prompt states the same acuity policy with the configured cues. The reply
must be a JSON object whose ``triage`` is one of the three levels; anything else raises
:class:`~neurovfm.labels.llm.LLMError`, which the caller records as a malformed reply. Nothing is sent unless a
judge with an endpoint is configured.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from neurovfm.labels.llm import LLMClient, LLMError, parse_json_reply
from neurovfm.labels.ontology import load_ontology, normalise_modality
from neurovfm.labels.rules import RuleExtractor

LEVELS = ("unremarkable", "routine", "urgent")
JUDGE_PROMPT_VERSION = "neurovfm-triage-v2"
_JUDGE_BASE = (
    "You triage neuroimaging studies (head CT or brain MRI) from their key findings and the clinical indication. "
    "Choose exactly one level. urgent: a finding that needs action within hours (acute hemorrhage of any "
    "compartment, acute infarct, mass effect, midline shift or herniation, a new or aggressive mass, "
    "hydrocephalus with obstruction, displaced fracture, pneumocephalus, infection with abscess). routine: any "
    "other abnormal finding (chronic, stable, postoperative, degenerative or incidental but reportable). "
    "unremarkable: no abnormal finding. Use the indication as clinical context for the findings. "
)
_JUDGE_TAIL = (
    'Reply with one JSON object only: {"triage": "unremarkable" | "routine" | "urgent", '
    '"justification": "<one short sentence>"}.'
)


@dataclass(frozen=True)
class AcuityCues:
    """Words that modulate an urgent diagnosis (``reportgen.triage`` of config.yaml)."""

    downgrade: tuple[str, ...]
    upgrade: tuple[str, ...] = ()
    variant: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, triage_cfg: dict) -> "AcuityCues":
        return cls(
            tuple(triage_cfg["downgrade_cues"]), tuple(triage_cfg["upgrade_cues"]), tuple(triage_cfg["variant_cues"])
        )


def _cue_rx(cues) -> re.Pattern | None:
    words = [re.escape(c).replace(r"\ ", r"[\s-]+").replace(r"\-", r"[\s-]?") for c in cues]
    return re.compile(rf"(?i)(?<![A-Za-z])(?:{'|'.join(words)})(?![A-Za-z])") if words else None


def judge_system(cues: AcuityCues) -> str:
    """The LLM judge's system prompt: the fixed policy plus the configured acuity modifiers."""
    parts = [_JUDGE_BASE]
    if cues.upgrade or cues.downgrade:
        parts.append(
            "Acuity modifiers apply to the finding they qualify: a finding that is urgent by type is "
            "urgent when described as " + ", ".join(f"'{c}'" for c in cues.upgrade) + "; otherwise it is "
            "routine when described as " + ", ".join(f"'{c}'" for c in cues.downgrade) + " (expected "
            "postoperative change, stable or treated disease). "
        )
    if cues.variant:
        parts.append(
            "A named normal variant (" + ", ".join(f"'{c}'" for c in cues.variant) + ") is not an abnormal finding. "
        )
    parts.append(_JUDGE_TAIL)
    return "".join(parts)


JUDGE_SYSTEM = judge_system(AcuityCues(()))


def most_specific(onto, names: set[str]) -> set[str]:
    """``names`` without those implied by another member (parents of a more specific diagnosis)."""
    implied = set()
    for n in names:
        implied |= onto.ancestors(n)
    return {n for n in names if n not in implied}


class RuleJudge:
    name = "rules"

    def __init__(self, downgrade_cues, upgrade_cues=(), variant_cues=()):
        self.extractor = RuleExtractor()
        self.cues = AcuityCues(tuple(downgrade_cues), tuple(upgrade_cues), tuple(variant_cues))
        self.downgrade = _cue_rx(self.cues.downgrade)
        self.upgrade = _cue_rx(self.cues.upgrade)
        self.variant = _cue_rx(self.cues.variant)

    @classmethod
    def from_config(cls, triage_cfg: dict) -> "RuleJudge":
        c = AcuityCues.from_config(triage_cfg)
        return cls(c.downgrade, c.upgrade, c.variant)

    @classmethod
    def from_defaults(cls) -> "RuleJudge":
        from neurovfm.config import default_config

        return cls.from_config(default_config()["reportgen"]["triage"])

    def acuity(self, text: str) -> str:
        """``variant`` | ``upgrade`` | ``downgrade`` | ``none``: the modifier that ``text`` (a mention's own
        stretch) carries; an upgrade cue wins over a downgrade cue ("new hemorrhage in the operative bed")."""
        if self.variant and self.variant.search(text):
            return "variant"
        if self.upgrade and self.upgrade.search(text):
            return "upgrade"
        if self.downgrade and self.downgrade.search(text):
            return "downgrade"
        return "none"

    def triage(self, findings: list[str], indication: str | None, modality: str) -> str:
        items = [f.strip() for f in findings if f and f.strip()]
        if not items:
            return "unremarkable"
        modality = normalise_modality(modality)
        onto = load_ontology(modality)
        text = " ".join(x if x.endswith((".", "!", "?")) else x + "." for x in items)
        mentions = [
            m
            for m in self.extractor.report_mentions(text, modality, indication or "")
            if m.status == "positive" and m.labels
        ]
        if not mentions and self.variant and all(self.variant.search(x) for x in items):
            return "unremarkable"  # only named normal variants
        positive = {lab for m in mentions for lab in m.labels}
        positive |= {p for lab in positive for p in onto.ancestors(lab)}
        specific = most_specific(onto, positive)
        # the stretches of every mention of an urgent diagnosis in one sentence are read together: "a hypodense
        # subdural collection, consistent with a chronic subdural hematoma" is one chronic finding
        stretches: dict[tuple[str, str], list[str]] = {}
        for m in mentions:
            for lab in m.labels:
                if lab in specific and onto[lab].urgent:
                    stretches.setdefault((m.sentence, lab), []).append(m.local or m.text)
        for parts in stretches.values():
            if self.acuity(" ".join(parts)) in ("upgrade", "none"):
                return "urgent"
        return "routine"


def judge_user_message(findings: list[str], indication: str | None) -> str:
    listed = "\n".join(f"- {f}" for f in findings) if findings else "(no findings reported)"
    return f"Indication: {indication or 'not given'}\nKey findings:\n{listed}"


def parse_triage(content: str) -> str:
    obj = parse_json_reply(content)
    level = obj.get("triage")
    if not isinstance(level, str) or level.strip().lower() not in LEVELS:
        raise LLMError(f"'triage' must be one of {LEVELS}, got {level!r}")
    return level.strip().lower()


class LLMJudge:
    def __init__(self, name: str, client: LLMClient, system: str = JUDGE_SYSTEM):
        self.name, self.client, self.system = name, client, system

    def triage(self, findings: list[str], indication: str | None, modality: str) -> str:
        user = judge_user_message(findings, indication)
        key = self.client.cache_key(JUDGE_PROMPT_VERSION, self.system, user)
        content = self.client.cache_get(key)
        cached = content is not None
        if content is None:
            content = self.client.chat(self.system, user)
        level = parse_triage(content)
        if not cached:
            self.client.cache_put(key, content)
        return level


def endpoint_client(spec: dict, cache_dir: str | Path | None) -> LLMClient:
    key_env = spec.get("api_key_env")
    return LLMClient(
        endpoint=spec["endpoint"],
        model=spec["model"],
        api_key=os.environ.get(key_env) if key_env else None,
        timeout_s=float(spec["timeout_s"]),
        retries=int(spec["retries"]),
        backoff_s=float(spec["backoff_s"]),
        cache_dir=Path(cache_dir) if cache_dir else None,
    )


def judges_from_config(rg: dict, cache_dir: str | Path | None) -> list:
    """The rule judge, then every configured LLM judge that has an endpoint (the others are skipped)."""
    judges = [RuleJudge.from_config(rg["triage"])]
    system = judge_system(AcuityCues.from_config(rg["triage"]))
    for spec in rg["triage"]["judges"]:
        if spec.get("endpoint") and spec.get("model"):
            judges.append(
                LLMJudge(
                    spec["name"], endpoint_client(spec, Path(cache_dir) / spec["name"] if cache_dir else None), system
                )
            )
    return judges
