"""Zero-shot patch matching across volumes (Fig. 3b): every labelled query token of volume A is matched to its
nearest token of volume B (cosine similarity of L2-normalised features, no spatial alignment), and counts as a match
when both tokens lie in the same anatomical region. Chance: the probability that a token of B drawn at random lies
in the query's region."""

from __future__ import annotations

import numpy as np


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def nearest_neighbours(a: np.ndarray, b: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Index into ``b`` of each row of ``a``'s most cosine-similar row (first one on ties)."""
    an, bn = l2_normalise(a), l2_normalise(b)
    out = np.empty(len(an), np.int64)
    for s in range(0, len(an), chunk):
        out[s : s + chunk] = (an[s : s + chunk] @ bn.T).argmax(axis=1)
    return out


def match_pair(feat_a, region_a, feat_b, region_b, n_regions: int) -> dict:
    """Queries: tokens of A with a region code > 0 (brain). Returns counts per region (queries, matches) and the
    chance expectation of matches."""
    region_a, region_b = np.asarray(region_a), np.asarray(region_b)
    q = region_a > 0
    nn = nearest_neighbours(np.asarray(feat_a)[q], feat_b)
    hit = region_b[nn] == region_a[q]
    share_b = np.bincount(region_b, minlength=n_regions) / max(len(region_b), 1)
    queries = np.bincount(region_a[q], minlength=n_regions)
    matches = np.bincount(region_a[q][hit], minlength=n_regions)
    return {
        "queries": queries,
        "matches": matches,
        "chance": float((queries * share_b).sum()),
        "nn": nn,
        "query_index": np.flatnonzero(q),
    }


def plan_pairs(meta: list[dict], n_pairs: int, seed: int) -> list[tuple[int, int]]:
    """Ordered pairs (A, B) of different patients and different acquisitions (modality, sequence or orientation),
    ``n_pairs`` drawn without replacement (all when fewer)."""

    def acq(m):
        return (m["modality"], m["sequence"], m["orientation"])

    pairs = [
        (i, j)
        for i in range(len(meta))
        for j in range(len(meta))
        if i != j and meta[i]["patient_id"] != meta[j]["patient_id"] and acq(meta[i]) != acq(meta[j])
    ]
    if len(pairs) <= n_pairs:
        return pairs
    rng = np.random.default_rng(seed)
    return [pairs[k] for k in sorted(rng.choice(len(pairs), n_pairs, replace=False))]
