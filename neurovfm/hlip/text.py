"""The text side of HLIP: which text pairs with a study, its tokenizer, and the text encoder.

* Text of a study (``text.source``): ``report``, the Findings and Impression sections of the study's report in
  the private ``reports.jsonl`` (what HLIP pairs with a study; PHI-bearing: it stays in memory), or ``findings``,
  the itemised findings of ``labels/findings.jsonl`` (de-identified, derived from the same sections). Only the
  studies of the training index are read, so no validation or test text is ever seen; a findings record of a
  training study that says another split is an error.
* Tokenizer: the project's byte-level BPE (:func:`neurovfm.reportgen.tokenizer.train_bpe`) fitted on those
  training texts at the start of every run. Fitting is deterministic, so a resumed run refits the same
  vocabulary, and the vocabulary (report fragments) is never written to disk. With ``text.path`` the folder's
  own tokenizer is used instead.
* Encoder: a BERT (``transformers``) built from a ``BertConfig`` with random weights and trained from scratch,
  or the model of a local folder (``text.path``, ``local_files_only``, loaded strictly: a missing, unexpected or
  mis-shaped weight is an error). The text embedding is the mean of the last hidden states over the report's
  tokens.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from torch import Tensor, nn

from neurovfm.labels.text import DIAGNOSTIC_SECTIONS, split_sections
from neurovfm.utils.jsonlines import read_jsonl

TEXT_SOURCES = ("report", "findings")


def report_text(report: str) -> str:
    """The Findings and Impression sections of a report, in report order, one paragraph each."""
    return "\n".join(s.text for s in split_sections(report) if s.kind in DIAGNOSTIC_SECTIONS)


def study_texts(source: str, path: str | Path, studies: set[str]) -> dict[str, str]:
    """{study_id: text} of the ``studies`` (the training index's) that have a non-empty text in ``path``
    (``reports.jsonl`` for source ``report``, ``labels/findings.jsonl`` for ``findings``)."""
    if source not in TEXT_SOURCES:
        raise ValueError(f"text source must be one of {TEXT_SOURCES}, got {source!r}")
    texts = {}
    for rec in read_jsonl(path):
        sid = rec["study_id"]
        if sid not in studies:
            continue
        if source == "findings":
            if rec.get("split", "train") != "train":
                raise ValueError(f"{path}: study {sid} of the training index is in split {rec['split']!r}")
            text = " ".join(rec.get("findings") or [])
        else:
            text = report_text(rec.get("report_text") or "")
        if text.strip():
            texts[sid] = text.strip()
    return texts


def fit_tokenizer(texts: dict[str, str], vocab_size: int):
    """Byte-level BPE fitted on ``texts`` (in study-ID order, so the fit does not depend on reading order)."""
    from neurovfm.reportgen.tokenizer import train_bpe  # noqa: PLC0415  (tokenizers / transformers are heavy)

    return train_bpe((texts[s] for s in sorted(texts)), vocab_size)


def _weight_name(entry) -> str:
    """The weight an entry of ``from_pretrained``'s loading info names (mismatches are (name, shapes) tuples)."""
    return entry if isinstance(entry, str) else str(entry[0])


def load_folder(path: str | Path):
    """(tokenizer, model) of a local Hugging Face folder; nothing downloads, every weight must match."""
    from transformers import AutoModel, AutoTokenizer  # noqa: PLC0415

    folder = Path(os.path.expandvars(str(path)))  # ${VAR} in the config: a site's own location of the weights
    if not folder.is_dir():
        raise FileNotFoundError(f"text encoder folder {folder} does not exist (text.path: {path})")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model, info = AutoModel.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    # a pooler head is not used (the embedding is the mean of the last hidden states): dropped, so its weights
    # need not be in the folder and are not trained
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    bad = {k: [n for n in v if not _weight_name(n).startswith("pooler.")] for k, v in info.items()}
    bad = {k: v for k, v in bad.items() if v}
    if bad:
        raise ValueError(f"text encoder {folder} does not load strictly: {bad}")
    return tokenizer, model


def build_bert(text: dict, vocab_size: int, pad_id: int):
    """A BERT with random weights (from the global torch RNG) of the ``text`` settings."""
    from transformers import BertConfig, BertModel  # noqa: PLC0415

    config = BertConfig(
        vocab_size=int(vocab_size),
        hidden_size=int(text["hidden_size"]),
        num_hidden_layers=int(text["layers"]),
        num_attention_heads=int(text["heads"]),
        intermediate_size=int(text["intermediate_size"]),
        max_position_embeddings=int(text["max_tokens"]),
        pad_token_id=int(pad_id),
    )
    return BertModel(config, add_pooling_layer=False)


def text_side(text: dict, texts: dict[str, str]):
    """(tokenizer, transformer) of a model's ``text`` settings: a fitted tokenizer and a new BERT, or a folder's."""
    if text.get("path"):
        tokenizer, model = load_folder(text["path"])
        positions = getattr(model.config, "max_position_embeddings", None)
        if positions is not None and positions < int(text["max_tokens"]):
            raise ValueError(f"text.max_tokens {text['max_tokens']} exceeds the folder model's {positions} positions")
        return tokenizer, model
    tokenizer = fit_tokenizer(texts, int(text["vocab_size"]))
    return tokenizer, build_bert(text, len(tokenizer), tokenizer.pad_token_id)


class TextTokenizer:
    """Texts -> padded ``input_ids`` / ``attention_mask`` of at most ``max_tokens`` tokens (picklable for loader
    workers: it holds the fitted tokenizer, never a file)."""

    def __init__(self, tokenizer, max_tokens: int):
        self.tokenizer, self.max_tokens = tokenizer, int(max_tokens)

    def __call__(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]


class TextEncoder(nn.Module):
    """A transformer's last hidden states, averaged over each text's tokens (padding left out) -> [B, hidden]."""

    def __init__(self, transformer: nn.Module):
        super().__init__()
        self.transformer = transformer
        self.width = int(transformer.config.hidden_size)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        keep = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * keep).sum(1) / keep.sum(1).clamp_min(1.0)


def text_fingerprint(texts: dict[str, str]) -> str:
    """A digest of the training texts (for the resume fingerprint; the texts themselves are never stored)."""
    h = hashlib.sha256()
    for sid in sorted(texts):
        h.update(sid.encode() + b"\0" + texts[sid].encode() + b"\0")
    return h.hexdigest()[:20]
