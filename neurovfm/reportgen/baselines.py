"""Baselines that frame the report generator's scores, written in the format of ``generations.jsonl``.

* **prior-only**: every study of a modality gets the same answer, the modality's most frequent training findings
  (as many as the median number of findings of its training studies; none when most are normal).
* **retrieval**: the findings of the nearest training study of the same modality by pooled frozen features (the
  mean token of each series, averaged over the study's series; cosine similarity after subtracting the training
  mean), copied.
* **shuffled-image control**: the trained model answers with the series of another study of the same modality
  (a derangement with a fixed seed): if it scores like the real model, the model ignores the image.

Each writes both variants (with and without the indication) so that every table has its row.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from .data import StudyTokens

VARIANTS = ("indication", "no_indication")


def prior_findings(findings: dict, pool: list[str]) -> dict[str, list[str]]:
    """{modality: its most frequent findings in ``pool``}, as many as the median count per study."""
    out = {}
    for m in sorted({findings[s]["modality"] for s in pool}):
        recs = [findings[s]["findings"] for s in pool if findings[s]["modality"] == m]
        k = int(np.median([len(f) for f in recs]))
        counts = Counter(x.strip() for f in recs for x in f if x.strip())
        out[m] = [x for x, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]
    return out


def pooled_features(studies: StudyTokens, sids: list[str]) -> np.ndarray:
    """[n, dim] mean over series of each series' mean token."""
    return np.stack([np.mean([t.mean(0).numpy() for t in studies(s)], axis=0) for s in sids]).astype(np.float64)


def nearest_training_study(
    train_feats: np.ndarray, train_ids: list[str], train_mod: list[str], query_feats: np.ndarray, query_mod: list[str]
) -> list[str]:
    """The id of the most cosine-similar training study of the same modality, per query (of any modality when the
    training studies hold none of the query's, as in a tiny test run)."""
    mu = train_feats.mean(0)

    def unit(x):
        x = x - mu
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    tr, q = unit(train_feats), unit(query_feats)
    train_mod = np.asarray(train_mod)
    out = []
    for k, m in enumerate(query_mod):
        cand = np.flatnonzero(train_mod == m)
        if cand.size == 0:
            cand = np.arange(len(train_ids))
        sims = tr[cand] @ q[k]
        out.append(train_ids[int(cand[int(np.argmax(sims))])])
    return out


def derangement(groups: list, seed: int) -> np.ndarray:
    """A permutation moving every index to another index of its group; a group of one keeps its index."""
    rng = np.random.default_rng(seed)
    out = np.arange(len(groups))
    for g in sorted(set(groups), key=str):
        idx = np.flatnonzero([x == g for x in groups])
        if len(idx) < 2:
            continue
        order = idx[rng.permutation(len(idx))]
        out[order] = np.roll(order, 1)
    return out


def record(sid: str, modality: str, variant: str, items: list[str], extra: dict | None = None) -> dict:
    return {
        "study_id": sid,
        "modality": modality,
        "variant": variant,
        "status": "ok",
        "error": None,
        "findings": list(items),
        "raw": json.dumps(list(items)),
        "seconds": 0.0,
        **(extra or {}),
    }


def prior_only(findings: dict, pool: list[str], sids: list[str]) -> list[dict]:
    prior = prior_findings(findings, pool)
    return [
        record(s, findings[s]["modality"], v, prior.get(findings[s]["modality"], [])) for s in sids for v in VARIANTS
    ]


def retrieval(findings: dict, train: StudyTokens, pool: list[str], query: StudyTokens, sids: list[str]) -> list[dict]:
    nn = nearest_training_study(
        pooled_features(train, pool),
        pool,
        [findings[s]["modality"] for s in pool],
        pooled_features(query, sids),
        [findings[s]["modality"] for s in sids],
    )
    return [
        record(s, findings[s]["modality"], v, findings[n]["findings"], {"neighbour": n})
        for s, n in zip(sids, nn)
        for v in VARIANTS
    ]


def shuffled_image(generator, studies: StudyTokens, findings: dict, indications: dict, sids: list[str], seed: int):
    """The model's answers with each study's series swapped for another study's of the same modality (a study alone
    in its modality keeps its own; ``image_of`` records whose series were used)."""
    perm = derangement([findings[s]["modality"] for s in sids], seed)
    rows = []
    for s, k in zip(sids, perm):
        donor = sids[int(k)]
        series = studies(donor)
        for v in VARIANTS:
            text, seconds = generator.generate(series, indications.get(s) if v == "indication" else None)
            from .generate import parse_findings

            items, status, error = parse_findings(text)
            rows.append(
                {
                    "study_id": s,
                    "modality": findings[s]["modality"],
                    "variant": v,
                    "status": status,
                    "error": error,
                    "findings": items,
                    "raw": text,
                    "seconds": round(seconds, 4),
                    "image_of": donor,
                }
            )
    return rows
