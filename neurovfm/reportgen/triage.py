"""Triage judges: findings + indication -> unremarkable / routine / urgent.

``RuleJudge`` (offline, the default): the rule-based report extractor reads the findings (the indication is
given to it as context, as it is for report labelling); of the positively stated diagnoses only the most
specific are kept (a generic parent such as ``brain_tumor`` yields to ``meningioma``); the study is urgent if
one of them is flagged urgent in the ontology and its sentence carries no chronicity cue, routine if there is
any finding, else unremarkable.

``LLMJudge``: any OpenAI-compatible chat endpoint with a fixed prompt (the transport, retries, backoff and
timeouts of ``neurovfm.labels.llm``). The reply must be a JSON object whose ``triage`` is one of the three
levels; anything else raises :class:`~neurovfm.labels.llm.LLMError`, which the caller records as a malformed
reply. Nothing is sent unless a judge with an endpoint is configured.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from neurovfm.labels.llm import LLMClient, LLMError, parse_json_reply
from neurovfm.labels.ontology import load_ontology, normalise_modality
from neurovfm.labels.rules import RuleExtractor

LEVELS = ("unremarkable", "routine", "urgent")
JUDGE_PROMPT_VERSION = "neurovfm-triage-v1"
JUDGE_SYSTEM = (
    "You triage neuroimaging studies (head CT or brain MRI) from their key findings and the clinical indication. "
    "Choose exactly one level. urgent: a finding that needs action within hours (acute hemorrhage of any "
    "compartment, acute infarct, mass effect, midline shift or herniation, a new or aggressive mass, "
    "hydrocephalus with obstruction, displaced fracture, pneumocephalus, infection with abscess). routine: any "
    "other abnormal finding (chronic, stable, postoperative, degenerative or incidental but reportable). "
    "unremarkable: no abnormal finding. Use the indication as clinical context for the findings. "
    "Reply with one JSON object only: {\"triage\": \"unremarkable\" | \"routine\" | \"urgent\", "
    "\"justification\": \"<one short sentence>\"}.")


def most_specific(onto, names: set[str]) -> set[str]:
    """``names`` without those implied by another member (parents of a more specific diagnosis)."""
    implied = set()
    for n in names:
        implied |= onto.ancestors(n)
    return {n for n in names if n not in implied}


class RuleJudge:
    name = "rules"

    def __init__(self, downgrade_cues):
        self.extractor = RuleExtractor()
        cues = [re.escape(c) for c in downgrade_cues]
        self.downgrade = re.compile(rf"(?i)\b(?:{'|'.join(cues)})\b") if cues else None

    @classmethod
    def from_defaults(cls) -> "RuleJudge":
        from neurovfm.config import default_config

        return cls(default_config()["reportgen"]["triage"]["downgrade_cues"])

    def triage(self, findings: list[str], indication: str | None, modality: str) -> str:
        items = [f.strip() for f in findings if f and f.strip()]
        if not items:
            return "unremarkable"
        modality = normalise_modality(modality)
        onto = load_ontology(modality)
        text = " ".join(x if x.endswith((".", "!", "?")) else x + "." for x in items)
        result = self.extractor.extract(text, modality, indication or "")
        positive = {n for n, r in result.items() if r["status"] == "positive"}
        for n in most_specific(onto, positive):
            evidence = result[n]["evidence"] or ""
            if onto[n].urgent and not (self.downgrade and self.downgrade.search(evidence)):
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
    def __init__(self, name: str, client: LLMClient):
        self.name, self.client = name, client

    def triage(self, findings: list[str], indication: str | None, modality: str) -> str:
        user = judge_user_message(findings, indication)
        key = self.client.cache_key(JUDGE_PROMPT_VERSION, JUDGE_SYSTEM, user)
        content = self.client.cache_get(key)
        cached = content is not None
        if content is None:
            content = self.client.chat(JUDGE_SYSTEM, user)
        level = parse_triage(content)
        if not cached:
            self.client.cache_put(key, content)
        return level


def endpoint_client(spec: dict, cache_dir: str | Path | None) -> LLMClient:
    key_env = spec.get("api_key_env")
    return LLMClient(endpoint=spec["endpoint"], model=spec["model"],
                     api_key=os.environ.get(key_env) if key_env else None, timeout_s=float(spec["timeout_s"]),
                     retries=int(spec["retries"]), backoff_s=float(spec["backoff_s"]),
                     cache_dir=Path(cache_dir) if cache_dir else None)


def judges_from_config(rg: dict, cache_dir: str | Path | None) -> list:
    """The rule judge, then every configured LLM judge that has an endpoint (the others are skipped)."""
    judges = [RuleJudge(rg["triage"]["downgrade_cues"])]
    for spec in rg["triage"]["judges"]:
        if spec.get("endpoint") and spec.get("model"):
            judges.append(LLMJudge(spec["name"], endpoint_client(spec, Path(cache_dir) / spec["name"]
                                                                 if cache_dir else None)))
    return judges


