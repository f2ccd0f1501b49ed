"""BLEU-2, ROUGE-L and METEOR of generated against reference findings, offline, by the libraries that published
numbers come from.

Texts are lower-cased and split into word tokens (``\\w+``) first, the same for every metric.

- BLEU-2: ``sacrebleu``'s sentence BLEU with uniform weights on 1- and 2-gram modified precisions and the
  brevity penalty (closest reference length); a zero n-gram count is floored at 0.1 (sacrebleu's ``floor``
  smoothing, Chen & Cherry's method 1) so that a study without a matching bigram scores > 0; scaled to [0, 1].
- ROUGE-L: ``rouge-score``'s ROUGE-L F-measure (longest common subsequence, Lin 2004), without stemming.
- METEOR: METEOR 1.5 (Denkowski & Lavie 2014; exact, stem, synonym and paraphrase stages) through
  ``pycocoevalcap``, the version image-captioning papers report, when a Java runtime and ``pycocoevalcap`` are
  installed. Otherwise NLTK's METEOR (Banerjee & Lavie 2005; exact and Porter-stem stages: the WordNet synonym
  stage is off because no registry package ships WordNet) and the table says it is a lower bound.

Each table row names the implementation that produced it (:func:`implementations`).
"""

from __future__ import annotations

import re
import shutil
from functools import lru_cache

_WORD = re.compile(r"\w+")

METEOR_15 = "METEOR 1.5 (pycocoevalcap, Java)"
METEOR_NLTK = "NLTK METEOR without synonyms (a lower bound of METEOR 1.5)"


def tokens(text: str) -> list[str]:
    return _WORD.findall((text or "").lower())


def _joined(text: str) -> str:
    return " ".join(tokens(text))


@lru_cache(maxsize=1)
def _bleu():
    from sacrebleu.metrics import BLEU

    return BLEU(
        max_ngram_order=2, effective_order=True, smooth_method="floor", smooth_value=0.1, tokenize="none", force=True
    )


def bleu2(hypothesis: str, references: list[str] | str) -> float:
    refs = [references] if isinstance(references, str) else references
    hyp = _joined(hypothesis)
    if not hyp:
        return 0.0
    return float(_bleu().sentence_score(hyp, [_joined(r) for r in refs]).score) / 100.0


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    # rouge-score's own tokenizer (lower-case, [a-z0-9]+) on text already reduced to word tokens
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(hypothesis: str, reference: str) -> float:
    h, r = _joined(hypothesis), _joined(reference)
    if not h or not r:
        return 0.0
    return float(_rouge().score(r, h)["rougeL"].fmeasure)


class _NoSynonyms:
    """Stands in for the WordNet corpus: no word has synonyms (METEOR's exact + stem stages only)."""

    @staticmethod
    def synsets(word: str) -> list:
        return []


def meteor_nltk(hypothesis: str, reference: str) -> float:
    from nltk.stem.porter import PorterStemmer
    from nltk.translate.meteor_score import meteor_score

    h, r = tokens(hypothesis), tokens(reference)
    if not h or not r:
        return 0.0
    return float(meteor_score([r], h, stemmer=PorterStemmer(), wordnet=_NoSynonyms()))


def meteor15_available() -> bool:
    """A Java runtime on PATH and pycocoevalcap installed (``pip install pycocoevalcap``)."""
    if shutil.which("java") is None:
        return False
    try:
        import pycocoevalcap.meteor.meteor  # noqa: F401
    except ImportError:
        return False
    return True


@lru_cache(maxsize=1)
def _meteor15():
    """One METEOR 1.5 Java process per Python process (it loads its paraphrase table once, about 20 s)."""
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def meteor15_scores(hypotheses: list[str], references: list[str]) -> list[float]:
    """METEOR 1.5 of each (hypothesis, reference) pair; an empty text scores 0."""
    pairs = {i: (_joined(h), _joined(r)) for i, (h, r) in enumerate(zip(hypotheses, references))}
    scored = {i: p for i, p in pairs.items() if p[0] and p[1]}
    out = [0.0] * len(pairs)
    if not scored:
        return out
    ids = sorted(scored)
    _, scores = _meteor15().compute_score({i: [scored[i][1]] for i in ids}, {i: [scored[i][0]] for i in ids})
    for i, s in zip(ids, scores):
        out[i] = float(s)
    return out


def meteor(hypothesis: str, reference: str) -> float:
    """METEOR of one pair: METEOR 1.5 where available, else NLTK's lower bound (see :func:`implementations`)."""
    if meteor15_available():
        return meteor15_scores([hypothesis], [reference])[0]
    return meteor_nltk(hypothesis, reference)


def implementations() -> dict[str, str]:
    """Metric name -> the implementation (library and version) that scores it on this machine."""
    from importlib.metadata import version

    meteor_impl = METEOR_15 if meteor15_available() else f"{METEOR_NLTK}, nltk {version('nltk')}"
    return {
        "BLEU-2": f"sacrebleu {version('sacrebleu')} (sentence BLEU, n <= 2, floor smoothing 0.1)",
        "ROUGE-L": f"rouge-score {version('rouge-score')} (rougeL F-measure)",
        "METEOR": meteor_impl,
    }


def score_pairs(name: str, hypotheses: list[str], references: list[str]) -> list[float]:
    """Scores of metric ``name`` for each (hypothesis, reference) pair (METEOR 1.5: one Java process for all)."""
    if name == "METEOR":
        if meteor15_available():
            return meteor15_scores(hypotheses, references)
        return [meteor_nltk(h, r) for h, r in zip(hypotheses, references)]
    return [METRICS[name](h, r) for h, r in zip(hypotheses, references)]


METRICS = {"BLEU-2": lambda h, r: bleu2(h, r), "ROUGE-L": rouge_l, "METEOR": meteor}
