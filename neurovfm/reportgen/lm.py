"""The language model: any Hugging Face causal LM from a local folder, or the demo's tiny Qwen3 built from a
config with random weights. Nothing is ever downloaded (``local_files_only``, hub offline)."""

from __future__ import annotations

import logging
import os

import torch

from .tokenizer import ensure_specials, train_bpe

log = logging.getLogger("neurovfm")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def load_local(path: str, dtype: str = "fp32", attn_implementation: str = "sdpa"):
    """(model, tokenizer) from a folder written by ``save_pretrained``; the image/chat tokens are added (and
    the embeddings resized) when the tokenizer lacks them."""
    _offline()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not os.path.isdir(path):
        raise FileNotFoundError(f"reportgen.lm.path {path!r} is not a folder with a Hugging Face model")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    added = ensure_specials(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(
        path, local_files_only=True, dtype=DTYPES[dtype], attn_implementation=attn_implementation
    )
    if added or len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
        log.info("added %d special tokens; embeddings resized to %d", added, len(tokenizer))
    return model, tokenizer


def tiny_qwen3(tiny: dict, tokenizer, seed: int, attn_implementation: str = "sdpa"):
    """A small Qwen3 with seeded random weights, sized by ``reportgen.lm.tiny``."""
    _offline()
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
        attention_dropout=0.0,
        **tiny,
    )
    config._attn_implementation = attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config)
    return model


def build(lm_cfg: dict, train_texts, seed: int):
    """(model, tokenizer) of the config: the local model at ``lm.path``, else a tokenizer trained on
    ``train_texts`` and the tiny Qwen3."""
    if lm_cfg["path"]:
        return load_local(os.path.expandvars(lm_cfg["path"]), lm_cfg["dtype"], lm_cfg["attn_implementation"])
    tokenizer = train_bpe(train_texts, lm_cfg["tokenizer_vocab"])
    model = tiny_qwen3(lm_cfg["tiny"], tokenizer, seed, lm_cfg["attn_implementation"])
    return model.to(DTYPES[lm_cfg["dtype"]]), tokenizer


def enable_checkpointing(model) -> None:
    """Recompute each decoder layer's activations in the backward pass (Hugging Face), non-reentrant so that it
    works under FSDP2 and when the inputs do not require gradients (LoRA). transformers 5 renamed the method."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def checkpointing_enabled(model) -> bool:
    flag = getattr(type(model), "is_activation_checkpointing", None) or getattr(
        type(model), "is_gradient_checkpointing"
    )
    return bool(flag.fget(model))
