"""The share of the train split a pretraining model sees: a per-model ``data_fraction`` and ``modalities``.

Every study of the train split gets a rank within its modality: the order of a keyed hash of its ID (BLAKE2b keyed
with the run's seed), which depends on nothing else. A model with fraction ``f`` keeps the first ``floor(f * n)``
of the ``n`` studies of each of its modalities, with all their volumes. So the subsets are nested (the 5% subset
lies inside the 10% one, which lies inside the 25% one), each modality keeps its share (the CT/MRI balance of the
split is kept), and the choice is the same on every process and every rerun. Adding or removing other studies
from the split does not change the order of those that stay.

The subset is applied once, to the training dataset's volume list, before any objective sees it, so Vol-JEPA,
VideoMAE, HLIP and DINOv2 all train on the same studies for the same settings.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from neurovfm.config import ConfigError
from neurovfm.utils.atomic import write_csv, write_text

MODALITIES = ("CT", "MR")
DATA_RECORD = "data.json"  # pretrain/{model}/: fractions and counts
STUDIES_RECORD = "studies.csv"  # pretrain/{model}/: the studies trained on
_EPS = 1e-9  # 0.29 * 100 is 28.999999999999996 in floating point: the count must still be 29


def study_key(study_id: str, seed: int) -> str:
    """The study's rank key: a keyed hash of its ID (hex, compared as a string)."""
    key = str(int(seed)).encode()
    return hashlib.blake2b(str(study_id).encode(), key=key, digest_size=16).hexdigest()


def n_kept(fraction: float, n: int) -> int:
    """Studies kept of ``n`` at ``fraction``: the first floor(fraction x n) (never more than n)."""
    return min(int(n), int(math.floor(float(fraction) * int(n) + _EPS)))


@dataclass
class DataSubset:
    """What a model trains on: the volume indices kept, and per modality the studies available and kept."""

    fraction: float
    modalities: tuple[str, ...]
    seed: int
    keep: list[int]
    studies: dict[str, list[str]] = field(default_factory=dict)  # modality -> kept study IDs, in rank order
    available: dict[str, int] = field(default_factory=dict)  # modality -> studies of the split
    volumes: dict[str, int] = field(default_factory=dict)  # modality -> kept volumes
    n_volumes_total: int = 0

    @property
    def is_everything(self) -> bool:
        return len(self.keep) == self.n_volumes_total

    def digest(self) -> str:
        """sha256 of the sorted kept study IDs (compare two runs' data without the lists)."""
        ids = sorted(s for m in self.studies.values() for s in m)
        return hashlib.sha256("\n".join(ids).encode()).hexdigest()

    def summary(self) -> dict:
        return {
            "data_fraction": self.fraction,
            "modalities": list(self.modalities),
            "seed": self.seed,
            "rule": "per modality, the first floor(data_fraction x n) studies by keyed hash of the study ID",
            "per_modality": {
                m: {
                    "studies_available": int(self.available.get(m, 0)),
                    "studies_used": len(self.studies.get(m, [])),
                    "volumes_used": int(self.volumes.get(m, 0)),
                }
                for m in MODALITIES
            },
            "studies_used": sum(len(v) for v in self.studies.values()),
            "volumes_used": len(self.keep),
            "volumes_in_split": int(self.n_volumes_total),
            "studies_digest": self.digest(),
        }

    def table(self) -> pd.DataFrame:
        """One row per kept study: ``study_id, modality, rank`` (rank within its modality, 0 first)."""
        rows = [(s, m, r) for m in MODALITIES for r, s in enumerate(self.studies.get(m, []))]
        return pd.DataFrame(rows, columns=["study_id", "modality", "rank"])


def model_data(model: dict) -> tuple[float, tuple[str, ...]]:
    """A ``pretrain.models`` entry's ``data_fraction`` (default 1) and ``modalities`` (default both), checked."""
    fraction = float(model.get("data_fraction", 1.0))
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"data_fraction must lie in (0, 1], got {fraction}")
    mods = tuple(model.get("modalities") or MODALITIES)
    unknown = sorted(set(mods) - set(MODALITIES))
    if unknown or len(set(mods)) != len(mods):
        raise ConfigError(f"modalities must be distinct values of {list(MODALITIES)}, got {list(mods)}")
    return fraction, tuple(m for m in MODALITIES if m in mods)


def select_studies(
    volumes: list[dict], fraction: float, modalities=None, seed: int = 0, model_name: str = "the model"
) -> DataSubset:
    """The volumes (indices into ``volumes``, in their order) of the studies a model with ``fraction`` and
    ``modalities`` (None: both, and a modality the split lacks is simply absent) trains on. Raises ConfigError when
    an explicitly listed modality has no study in the split, or when the fraction keeps none of the studies of a
    modality the split has."""
    explicit = modalities is not None
    fraction, mods = model_data({"data_fraction": fraction, "modalities": list(modalities or MODALITIES)})
    by_modality: dict[str, set[str]] = {m: set() for m in MODALITIES}
    for v in volumes:
        if v["modality"] not in by_modality:
            raise ValueError(f"volume of study {v['study_id']} has modality {v['modality']!r}, not one of {MODALITIES}")
        by_modality[v["modality"]].add(str(v["study_id"]))
    kept: dict[str, list[str]] = {}
    for m in mods:
        pool = sorted(by_modality[m], key=lambda s: (study_key(s, seed), s))
        if not pool and not explicit:
            continue
        if not pool:
            raise ConfigError(
                f"pretrain.models.{model_name}: modality {m} is listed in its modalities, but the train split has "
                "no study of it"
            )
        k = n_kept(fraction, len(pool))
        if k == 0:
            raise ConfigError(
                f"pretrain.models.{model_name}: data_fraction {fraction:g} keeps none of the {len(pool)} {m} "
                f"studies of the train split (floor({fraction:g} x {len(pool)}) = 0); use at least "
                f"{1 / len(pool):.4g}, or leave {m} out of its modalities"
            )
        kept[m] = pool[:k]
    chosen = {m: set(ids) for m, ids in kept.items()}  # a volume stays with its study's rank in its own modality
    keep = [i for i, v in enumerate(volumes) if str(v["study_id"]) in chosen.get(v["modality"], ())]
    n_vol = {m: sum(1 for i in keep if volumes[i]["modality"] == m) for m in kept}
    return DataSubset(
        fraction=fraction,
        modalities=mods,
        seed=int(seed),
        keep=keep,
        studies=kept,
        available={m: len(by_modality[m]) for m in MODALITIES},
        volumes=n_vol,
        n_volumes_total=len(volumes),
    )


def restrict_dataset(dataset, model: dict, seed: int, model_name: str = "the model") -> DataSubset:
    """Select the model's studies (:func:`select_studies`) and cut ``dataset`` down to their volumes in place
    (``dataset.restrict``; a dataset without that method is accepted only when the subset is everything)."""
    fraction, mods = model_data(model)
    listed = mods if model.get("modalities") else None
    subset = select_studies(dataset.volumes, fraction, listed, seed, model_name)
    if not subset.is_everything:
        if not hasattr(dataset, "restrict"):
            raise TypeError(f"{type(dataset).__name__} cannot be restricted to a data subset (no restrict method)")
        dataset.restrict(subset.keep)
    return subset


def write_records(out_dir: str | Path, subset: DataSubset) -> None:
    """``data.json`` (fraction, modalities, counts, digest) and ``studies.csv`` (the kept studies) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / DATA_RECORD, json.dumps(subset.summary(), indent=2) + "\n")
    write_csv(out / STUDIES_RECORD, subset.table())
