"""The demo's tokenizer: a byte-level BPE trained offline on the training findings (Hugging Face
``tokenizers``), wrapped as a ``PreTrainedTokenizerFast``. Byte-level: any text encodes, so the vocabulary
only sets how compactly. Trained on report-derived findings (results-level text), never on indications."""

from __future__ import annotations

from collections.abc import Iterable

PAD, IM_START, IM_END, IMAGE = "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"
SPECIALS = [PAD, IM_START, IM_END, IMAGE]


def train_bpe(texts: Iterable[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=int(vocab_size),
        special_tokens=SPECIALS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(list(texts), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=IM_END, additional_special_tokens=[IM_START, IMAGE]
    )


def ensure_specials(tokenizer) -> int:
    """Add the chat and image tokens a tokenizer lacks (e.g. ``<image>`` to Qwen3's); returns how many."""
    missing = [t for t in SPECIALS if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id)]
    if not missing:
        return 0
    added = tokenizer.add_special_tokens({"additional_special_tokens": missing})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = PAD
    return added


def token_id(tokenizer, token: str) -> int:
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or tid == tokenizer.unk_token_id:
        raise ValueError(f"the tokenizer has no {token!r} token")
    return int(tid)
