"""Findings generation with a trained report generator, and the parsing of its answers.

An answer must be a JSON list of strings. Anything else (cut off, not JSON, a JSON object, non-string items)
is recorded with status ``malformed``, its raw text and the parser's reason; it is kept, not dropped.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import torch

from .connector import Connector, inputs_embeds
from .lm import load_local
from .prompt import encode
from .tokenizer import IM_END, IMAGE, token_id
from .train import CONNECTOR, LM_DIR

log = logging.getLogger("neurovfm")
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL | re.IGNORECASE)


def parse_findings(text: str) -> tuple[list[str], str, str | None]:
    """(findings, status, error): status ``ok`` for a JSON list of strings, else ``malformed``."""
    raw = (text or "").strip()
    fence = _FENCE.match(raw)
    body = fence.group(1) if fence else raw
    if not body:
        return [], "malformed", "empty answer"
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as err:
        return [], "malformed", f"not JSON: {err.msg} at {err.pos}"
    if not isinstance(obj, list):
        return [], "malformed", f"JSON {type(obj).__name__}, not a list"
    if not all(isinstance(x, str) for x in obj):
        return [], "malformed", "list items are not all strings"
    return [x.strip() for x in obj if x.strip()], "ok", None


class Generator:
    """A trained report generator (``lm/`` + ``connector.pt`` of a training folder)."""

    def __init__(self, model_dir: str | Path, rg: dict):
        model_dir = Path(model_dir)
        self.rg = rg
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model, self.tokenizer = load_local(
            str(model_dir / LM_DIR), rg["lm"]["dtype"], rg["lm"]["attn_implementation"]
        )
        self.model.to(self.device).eval()
        blob = torch.load(model_dir / CONNECTOR, map_location="cpu", weights_only=False)
        if blob.get("format") != "neurovfm-reportgen-connector":
            raise ValueError(f"{model_dir / CONNECTOR} is not a report-generation connector")
        self.connector = Connector(blob["dim_in"], blob["llm_dim"], blob["perceiver"])
        self.connector.load_state_dict(blob["state_dict"], strict=True)
        self.connector.to(self.device).eval()
        self.image_id = token_id(self.tokenizer, IMAGE)
        self.eos_id = token_id(self.tokenizer, IM_END)

    @torch.no_grad()
    def generate(self, series: list[torch.Tensor], indication: str | None) -> tuple[str, float]:
        """(decoded answer, seconds) for one study."""
        t0 = time.perf_counter()
        p, g = self.rg["prompt"], self.rg["generation"]
        ex = encode(
            self.tokenizer,
            p["system"],
            len(series),
            indication,
            p["instruction"],
            None,
            self.connector.n_latents,
            int(self.rg["max_seq_len"]),
        )
        ids = torch.tensor([ex.ids], device=self.device)
        visual = self.connector([s.to(self.device) for s in series])
        embeds = inputs_embeds(self.model.get_input_embeddings(), ids, self.image_id, [visual])
        out = self.model.generate(
            inputs_embeds=embeds,
            attention_mask=torch.ones_like(ids),
            num_beams=int(g["num_beams"]),
            do_sample=False,
            repetition_penalty=float(g["repetition_penalty"]),
            no_repeat_ngram_size=int(g["no_repeat_ngram_size"]),
            length_penalty=float(g["length_penalty"]),
            max_new_tokens=int(g["max_new_tokens"]),
            eos_token_id=self.eos_id,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        text = self.tokenizer.decode(out[0], skip_special_tokens=True)
        return text, time.perf_counter() - t0
