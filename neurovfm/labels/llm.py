"""LLM extractor: any OpenAI-compatible chat-completions server (hospitals run these on-premises).

Nothing is sent unless ``labels.llm.endpoint`` is configured. One request per report; the reply must
be a JSON object with a present/absent decision and a short rationale for every diagnosis of the
ontology. Replies are validated: a missing or unknown diagnosis, or a reply that is not JSON, is an
error recorded for that report, never silently read as "absent". Valid replies are cached on disk,
keyed by sha256(model, prompt version, modality, report text); the cache holds report-derived text
and therefore belongs under the private directory. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..utils.atomic import write_text
from .ontology import Ontology, load_ontology, normalise_modality

PROMPT_VERSION = "neurovfm-labels-v1"
FINDINGS_PROMPT_VERSION = "neurovfm-findings-v1"
log = logging.getLogger("neurovfm.labels.llm")


class LLMConfigError(ValueError):
    """The LLM extractor was chosen but its endpoint or model is not configured."""


class LLMError(RuntimeError):
    """A request that failed after all retries, or a reply that could not be parsed."""


class _Retryable(Exception):
    def __init__(self, msg: str, wait_s: float | None = None):
        super().__init__(msg)
        self.wait_s = wait_s


@dataclass
class LLMClient:
    endpoint: str
    model: str
    api_key: str | None = None
    timeout_s: float = 120.0
    retries: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    cache_dir: Path | None = None
    json_mode: bool = True  # send response_format=json_object; switched off if the server rejects it

    @property
    def url(self) -> str:
        ep = self.endpoint.rstrip("/")
        return ep if ep.endswith("/chat/completions") else ep + "/chat/completions"

    def _post(self, body: dict) -> dict:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", "replace")[:300]
            if err.code == 429 or err.code >= 500:
                retry_after = err.headers.get("Retry-After") if err.headers else None
                wait = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
                raise _Retryable(f"HTTP {err.code}", wait) from err
            if err.code == 400 and "response_format" in body and "response_format" in detail:
                raise _Retryable("server does not support response_format", 0.0) from err
            # the server's message is not repeated: it may echo report text, and errors reach results/
            raise LLMError(f"HTTP {err.code} from the LLM server") from err
        except (socket.timeout, TimeoutError) as err:
            raise _Retryable(f"timeout after {self.timeout_s} s") from err
        except urllib.error.URLError as err:
            if isinstance(err.reason, (socket.timeout, TimeoutError)):
                raise _Retryable(f"timeout after {self.timeout_s} s") from err
            raise _Retryable(f"connection error: {err.reason}") from err
        except json.JSONDecodeError as err:
            raise LLMError(f"the LLM server's response is not JSON: {err}") from err

    def chat(self, system: str, user: str) -> str:
        """The assistant message's content; retries with exponential backoff on 429/5xx/timeouts."""
        return self.chat_messages([{"role": "system", "content": system}, {"role": "user", "content": user}])

    def chat_messages(self, messages: list[dict]) -> str:
        """:meth:`chat` for any message list (e.g. user content parts with images)."""
        last = None
        for attempt in range(self.retries + 1):
            body = {"model": self.model, "temperature": 0, "messages": messages}
            if self.json_mode:
                body["response_format"] = {"type": "json_object"}
            try:
                reply = self._post(body)
            except _Retryable as err:
                last = err
                if str(err).startswith("server does not support response_format"):
                    self.json_mode = False
                    continue
                if attempt == self.retries:
                    break
                wait = err.wait_s if err.wait_s is not None else self.backoff_s * 2**attempt
                log.warning("LLM request failed (%s); retry %d/%d in %.1f s", err, attempt + 1, self.retries, wait)
                time.sleep(min(wait, self.max_backoff_s))
                continue
            try:
                return reply["choices"][0]["message"]["content"]
            except (KeyError, IndexError, TypeError) as err:
                raise LLMError("unexpected response shape from the LLM server (no choices[0].message.content)") from err
        raise LLMError(f"LLM request failed after {self.retries + 1} attempts: {last}")

    # -- cache ---------------------------------------------------------------------------------
    def cache_key(self, version: str, *parts: str) -> str:
        h = hashlib.sha256()
        for p in (self.model, version, *parts):
            h.update(p.encode("utf-8"))
            h.update(b"\x1f")
        return h.hexdigest()

    def cache_get(self, key: str) -> str | None:
        if not self.cache_dir:
            return None
        path = Path(self.cache_dir) / key[:2] / f"{key}.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))["content"]

    def cache_put(self, key: str, content: str) -> None:
        if self.cache_dir:
            write_text(Path(self.cache_dir) / key[:2] / f"{key}.json", json.dumps({"content": content}))


def client_from_config(llm_cfg: dict, cache_dir: str | os.PathLike | None) -> LLMClient:
    """An LLMClient from the ``labels.llm`` config section; raises if no endpoint/model is configured."""
    endpoint, model = llm_cfg.get("endpoint"), llm_cfg.get("model")
    if not endpoint:
        raise LLMConfigError(
            "labels.extractor is 'llm' but labels.llm.endpoint is not set: "
            "configure an OpenAI-compatible endpoint (nothing is sent without one)"
        )
    if not model:
        raise LLMConfigError("labels.llm.model is not set")
    key_env = llm_cfg.get("api_key_env")
    return LLMClient(
        endpoint=endpoint,
        model=model,
        api_key=os.environ.get(key_env) if key_env else None,
        timeout_s=float(llm_cfg["timeout_s"]),
        retries=int(llm_cfg["retries"]),
        backoff_s=float(llm_cfg["backoff_s"]),
        cache_dir=Path(cache_dir) if cache_dir else None,
    )


# -- diagnosis labels ----------------------------------------------------------------------------
def label_prompt(onto: Ontology) -> str:
    kind = "head CT" if onto.modality == "CT" else "brain MRI"
    lines = [
        f"You label {kind} radiology reports with diagnoses.",
        "For EVERY diagnosis below decide whether the report says it is present in this study.",
        "Rules: only the findings/impression count (not the clinical indication or a question to rule out); "
        "negated, resolved or purely historical findings are absent; findings the radiologist only raises "
        "as possible / cannot exclude are absent; 'likely', 'probable', 'consistent with' count as present.",
        'Reply with one JSON object only: {"diagnoses": {"<name>": {"present": "yes" or "no", '
        '"rationale": "<one short sentence>"}, ...}} with exactly the names below as keys.',
        "",
        "Diagnoses (name: guidance):",
    ]
    lines += [f"- {d.name}: {d.guidance}" for d in onto.diagnoses]
    return "\n".join(lines)


def parse_json_reply(content: str) -> dict:
    """The JSON object in a reply: tolerates code fences and text around the object."""
    text = (content or "").strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL | re.IGNORECASE)
    if fence:
        text = fence.group(1).strip()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        lo, hi = text.find("{"), text.rfind("}")
        if lo < 0 or hi <= lo:
            raise LLMError("the reply contains no JSON object") from None
        try:
            obj = json.loads(text[lo : hi + 1])
        except json.JSONDecodeError as err:
            raise LLMError(f"the reply is not valid JSON: {err}") from err
    if not isinstance(obj, dict):
        raise LLMError("the reply is not a JSON object")
    return obj


def _as_bool(v, name: str) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("yes", "true", "present", "y"):
        return True
    if isinstance(v, str) and v.strip().lower() in ("no", "false", "absent", "n"):
        return False
    raise LLMError(f"diagnosis {name!r}: 'present' must be yes/no, got {v!r}")


def validate_labels(obj: dict, onto: Ontology) -> dict[str, dict]:
    """{name: {present, rationale}} for every ontology name; raises on missing/unknown names."""
    table = obj.get("diagnoses", obj)
    if not isinstance(table, dict):
        raise LLMError("'diagnoses' is not an object")
    names = set(onto.names)
    unknown = sorted(set(table) - names)
    missing = [n for n in onto.names if n not in table]
    if unknown or missing:
        raise LLMError(
            f"reply does not match the ontology: missing {missing[:8]}{'...' if len(missing) > 8 else ''}"
            f" unknown {unknown[:8]}{'...' if len(unknown) > 8 else ''}"
        )
    out = {}
    for n in onto.names:
        entry = table[n]
        if isinstance(entry, dict):
            present, rationale = _as_bool(entry.get("present"), n), str(entry.get("rationale", ""))
        else:
            present, rationale = _as_bool(entry, n), ""
        out[n] = {"present": present, "rationale": rationale}
    return out


class LLMExtractor:
    """Same interface as :class:`~neurovfm.labels.rules.RuleExtractor`; raises LLMError per report."""

    def __init__(self, client: LLMClient):
        self.client = client

    def extract(self, report_text: str, modality: str, indication: str = "") -> dict[str, dict]:
        onto = load_ontology(normalise_modality(modality))
        system = label_prompt(onto)
        user = f"Report:\n{report_text}"
        key = self.client.cache_key(PROMPT_VERSION, onto.modality, system, user)
        content = self.client.cache_get(key)
        from_cache = content is not None
        if content is None:
            content = self.client.chat(system, user)
        labels = validate_labels(parse_json_reply(content), onto)
        if not from_cache:
            self.client.cache_put(key, content)
        present = onto.close(n for n, v in labels.items() if v["present"])
        return {
            n: {
                "present": n in present,
                "side": None,
                "evidence": labels[n]["rationale"] or None,
                "status": "positive" if labels[n]["present"] else ("implied" if n in present else "absent"),
            }
            for n in onto.names
        }


# -- key findings ---------------------------------------------------------------------------------
FINDINGS_SYSTEM = (
    "You summarise a neuroimaging radiology report into its key findings. Use only the findings and "
    "impression; leave out normal or unremarkable statements, comparisons with prior studies, bare "
    "measurements and the clinical indication; do not repeat a finding stated in both sections; order "
    "them from most to least clinically urgent. Reply with one JSON object only: "
    '{"findings": ["<finding>", ...]} (an empty list for a normal study).'
)


def llm_findings(client: LLMClient, report_text: str) -> list[str]:
    user = f"Report:\n{report_text}"
    key = client.cache_key(FINDINGS_PROMPT_VERSION, FINDINGS_SYSTEM, user)
    content = client.cache_get(key)
    cached = content is not None
    if content is None:
        content = client.chat(FINDINGS_SYSTEM, user)
    obj = parse_json_reply(content)
    items = obj.get("findings")
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise LLMError("'findings' must be a list of strings")
    if not cached:
        client.cache_put(key, content)
    return [x.strip() for x in items if x.strip()]


def map_reports(
    fn, items: list, max_workers: int, private_dir=None, stage: str = "llm"
) -> list[tuple[object, str | None]]:
    """Apply ``fn`` to each item with a thread pool; returns (result, None) or (None, error) per item,
    in input order, so one bad report never stops the run. The error is a reason code with a PHI-free detail
    (:func:`neurovfm.utils.failure.describe`: an exception's message may quote report text); the raw message goes
    to ``private_dir/errors/{stage}.log`` when ``private_dir`` is given."""
    from neurovfm.utils.failure import describe, keep_raw

    def safe(item):
        try:
            return fn(item), None
        except (LLMError, OSError, ValueError) as err:
            keep_raw(private_dir, stage, err)
            return None, describe(err).line()

    with ThreadPoolExecutor(max_workers=max(1, int(max_workers))) as pool:
        return list(pool.map(safe, items))
