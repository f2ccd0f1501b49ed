"""BLEU-2, ROUGE-L and METEOR of generated against reference findings, offline.

Texts are lower-cased and split into word tokens (``\\w+``). BLEU-2: sentence BLEU with uniform weights on
1- and 2-gram modified precisions and the brevity penalty (NLTK's implementation, Chen & Cherry method-1
smoothing so that a study without a matching bigram scores > 0 instead of a warning). ROUGE-L: F1 of the
longest common subsequence (Lin 2004, beta = 1). METEOR: NLTK's implementation of Banerjee & Lavie (2005)
with its default parameters (alpha 0.9, beta 3, gamma 0.5) and the exact and Porter-stem matching stages;
the WordNet synonym stage is switched off because no registry package ships the WordNet data (NLTK would
download it at run time). Scores are therefore at most the full METEOR's.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+")


def tokens(text: str) -> list[str]:
    return _WORD.findall((text or "").lower())


def bleu2(hypothesis: str, references: list[str] | str) -> float:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    refs = [references] if isinstance(references, str) else references
    hyp = tokens(hypothesis)
    if not hyp:
        return 0.0
    return float(
        sentence_bleu(
            [tokens(r) for r in refs], hyp, weights=(0.5, 0.5), smoothing_function=SmoothingFunction().method1
        )
    )


def lcs_length(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(hypothesis: str, reference: str) -> float:
    h, r = tokens(hypothesis), tokens(reference)
    if not h or not r:
        return 0.0
    lcs = lcs_length(h, r)
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(h), lcs / len(r)
    return 2 * p * rec / (p + rec)


class _NoSynonyms:
    """Stands in for the WordNet corpus: no word has synonyms (METEOR's exact + stem stages only)."""

    @staticmethod
    def synsets(word: str) -> list:
        return []


def meteor(hypothesis: str, reference: str) -> float:
    from nltk.stem.porter import PorterStemmer
    from nltk.translate.meteor_score import meteor_score

    h, r = tokens(hypothesis), tokens(reference)
    if not h or not r:
        return 0.0
    return float(meteor_score([r], h, stemmer=PorterStemmer(), wordnet=_NoSynonyms()))


METRICS = {"BLEU-2": lambda h, r: bleu2(h, r), "ROUGE-L": rouge_l, "METEOR": meteor}
