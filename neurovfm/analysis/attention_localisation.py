"""Does a trained probe look at the lesion? Attention localisation of lateralised findings (Fig. 3d's claim).

For each test study with a positive, lateralised finding (side from the report, ``labels/findings.jsonl``; lesion
centres from the synthetic export's ground truth), the probe's attention for that class is split over the study's
volumes (:func:`neurovfm.probes.attention.study_attention`, the code ``neurovfm predict`` uses). In the entry that
holds most of the class's attention, the top token gives:

* ``side``: the peak's side of the brain (:func:`neurovfm.predict.record.side_of`, relative to the centre of the
  volume's foreground tokens); chance 0.5 among peaks off the midline;
* ``distance_pct``: the share of the entry's foreground tokens that lie closer to the lesion centre than the peak
  does (0: the peak is the token nearest the lesion; a uniformly drawn token: 0.5 in expectation).

Two controls come with every run: attention placed on the token nearest the lesion (``oracle``: side 1.0, percentile
0.0, showing that the geometry can see a correct peak) and attention drawn at random per token (``random``: side
about 0.5, percentile about 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from neurovfm.predict.record import side_of, token_lps

SOURCES = ("probe", "oracle", "random")


@dataclass(frozen=True)
class Target:
    """A lateralised positive finding of one study: its class index, side and lesion centres (LPS mm)."""

    study_id: str
    k: int
    diagnosis: str
    side: str
    centres: np.ndarray  # [m, 3]


def lesion_targets(
    truths: dict[str, dict], laterality: dict[str, dict], class_names: list[str], labels: dict[str, np.ndarray]
) -> list[Target]:
    """Targets of the studies in ``labels`` (study_id -> label row): each positive class that the report gives a
    side for, with the centres of the ground-truth findings on that side. ``truths``: study_id -> truth record."""
    out = []
    for sid, row in labels.items():
        sides = laterality.get(sid, {})
        truth = truths.get(sid)
        if truth is None:
            continue
        for k, name in enumerate(class_names):
            side = sides.get(name)
            if not row[k] or side not in ("left", "right"):
                continue
            centres = [f["center_lps"] for f in truth["findings"] if f.get("side") == side and f.get("center_lps")]
            if centres:
                out.append(Target(sid, k, name, side, np.asarray(centres, dtype=float)))
    return out


def peak_entry(entries: list[dict], k: int) -> dict:
    """The entry (volume x window) that holds most of class ``k``'s attention."""
    return max(entries, key=lambda e: float(_column(e["attention"], k).sum()))


def _column(att: np.ndarray, k: int) -> np.ndarray:
    att = np.asarray(att, dtype=float)
    return att[:, k] if att.shape[1] > 1 else att[:, 0]


def score_peak(att: np.ndarray, lps: np.ndarray, centres: np.ndarray, half_token_mm: float) -> dict:
    """Side and distance percentile of the top token of ``att`` [n] over tokens at ``lps`` [n, 3]."""
    dist = np.linalg.norm(lps[:, None, :] - centres[None, :, :], axis=2).min(axis=1)
    top = int(np.argmax(att))
    return {
        "peak_side": side_of(float(lps[top, 0]), float(lps[:, 0].mean()), half_token_mm),
        "peak_distance_mm": float(dist[top]),
        "distance_pct": float((dist < dist[top]).mean()),
    }


def localise(
    target: Target, entries: list[dict], volume: dict, patch, spacing_mm, rng: np.random.Generator
) -> list[dict]:
    """One row per source (probe, oracle, random) for one target; ``entries`` from ``study_attention`` of its
    study, ``volume`` the shard index entry of the peak entry's series (see :func:`peak_entry`)."""
    e = peak_entry(entries, target.k)
    lps = token_lps(e["coords"], volume, patch, spacing_mm)
    half = 0.5 * float(patch[2]) * float(spacing_mm[2])
    dist = np.linalg.norm(lps[:, None, :] - target.centres[None, :, :], axis=2).min(axis=1)
    attention = {
        "probe": _column(e["attention"], target.k),
        "oracle": (dist == dist.min()).astype(float),
        "random": rng.random(len(lps)),
    }
    return [
        {
            "study_id": target.study_id,
            "diagnosis": target.diagnosis,
            "side": target.side,
            "source": source,
            "series_id": e["series_id"],
            "window": e["window"],
            "n_tokens": len(lps),
            **score_peak(att, lps, target.centres, half),
        }
        for source, att in attention.items()
    ]


def wilson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (statsmodels)."""
    from statsmodels.stats.proportion import proportion_confint

    if n == 0:
        return float("nan"), float("nan")
    lo, hi = proportion_confint(k, n, alpha=alpha, method="wilson")
    return float(lo), float(hi)


def summarise(rows: pd.DataFrame, n_boot: int, alpha: float, seed: int) -> pd.DataFrame:
    """Per (modality, source): side accuracy over peaks off the midline (Wilson CI), and the mean distance
    percentile (study-level bootstrap CI; 0.5 is chance)."""
    out = []
    rng = np.random.default_rng(seed)
    for (modality, source), d in rows.groupby(["modality", "source"], sort=False):
        lateral = d[d["peak_side"] != "midline"]
        k = int((lateral["peak_side"] == lateral["side"]).sum())
        lo, hi = wilson(k, len(lateral), alpha)
        studies = d["study_id"].unique()
        per_study = d.groupby("study_id")["distance_pct"].mean().reindex(studies).to_numpy()
        boots = per_study[rng.integers(0, len(studies), size=(n_boot, len(studies)))].mean(axis=1)
        out.append(
            {
                "modality": modality,
                "source": source,
                "n_findings": len(d),
                "n_studies": len(studies),
                "n_off_midline": len(lateral),
                "side_accuracy": k / len(lateral) if len(lateral) else float("nan"),
                "side_ci_low": lo,
                "side_ci_high": hi,
                "distance_pct": float(per_study.mean()),
                "distance_pct_ci_low": float(np.quantile(boots, alpha / 2)),
                "distance_pct_ci_high": float(np.quantile(boots, 1 - alpha / 2)),
                "median_peak_distance_mm": float(d["peak_distance_mm"].median()),
            }
        )
    return pd.DataFrame(out)
