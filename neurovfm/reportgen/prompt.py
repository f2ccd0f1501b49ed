"""Prompts and training examples: ChatML turns (Qwen's chat format), one image placeholder per series,
the indication as a line of the user turn, and labels masked (-100) everywhere but the answer."""

from __future__ import annotations

import json
from dataclasses import dataclass

from .connector import IGNORE, expand_placeholders
from .tokenizer import IM_END, IM_START, IMAGE, token_id


def stage1_target(findings: list[str], normal_text: str) -> str:
    """Stage 1: the findings as one string."""
    return " ".join(f.strip() for f in findings if f.strip()) or normal_text


def stage2_target(findings: list[str]) -> str:
    """Stage 2: the findings as a JSON list, in the (relevance) order of the reference."""
    return json.dumps([f.strip() for f in findings if f.strip()], ensure_ascii=False)


def user_text(n_series: int, indication: str | None, instruction: str | None) -> str:
    lines = [IMAGE * n_series]
    if indication:
        lines.append(f"Indication: {indication.strip()}")
    if instruction:
        lines.append(instruction)
    return "\n".join(lines)


def chat_prompt(system: str, user: str) -> str:
    sys_turn = f"{IM_START}system\n{system}{IM_END}\n" if system else ""
    return f"{sys_turn}{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n"


@dataclass
class Example:
    ids: list[int]
    labels: list[int]
    n_images: int
    truncated: bool


def encode(
    tokenizer,
    system: str,
    n_series: int,
    indication: str | None,
    instruction: str | None,
    target: str | None,
    n_latents: int,
    max_len: int,
) -> Example:
    """Token ids with each placeholder widened to ``n_latents`` slots; ``target`` None: a generation prompt.
    A too-long example loses the end of its answer (never the images or the prompt)."""
    prompt = chat_prompt(system, user_text(n_series, indication, instruction))
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    t_ids = (
        []
        if target is None
        else tokenizer(target, add_special_tokens=False)["input_ids"] + [token_id(tokenizer, IM_END)]
    )
    ids, labels, n = expand_placeholders(
        p_ids + t_ids, [IGNORE] * len(p_ids) + t_ids, token_id(tokenizer, IMAGE), n_latents
    )
    if n != n_series:
        raise ValueError(f"the prompt holds {n} image placeholders for {n_series} series")
    truncated = len(ids) > max_len
    if truncated:
        prompt_len = len(ids) - len(t_ids)
        if prompt_len >= max_len:
            raise ValueError(
                f"the prompt alone ({prompt_len} tokens) exceeds max_seq_len {max_len}; lower reportgen.max_series"
            )
        ids, labels = ids[:max_len], labels[:max_len]
    return Example(ids, labels, n, truncated)
