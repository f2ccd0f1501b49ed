"""The diagnosis ontologies (82 CT, 74 MRI names, in the paper's order) and their implication edges.

The names and order are the paper's; the per-diagnosis guidance, the category and the ``urgent`` flag
are our own (see the header of ``data/ct.yaml`` / ``data/mri.yaml``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources

import yaml

CATEGORIES = (
    "hemorrhagic",
    "traumatic",
    "vascular",
    "ischemic",
    "neoplastic",
    "congenital",
    "infectious_inflammatory",
    "csf_hydrocephalus",
    "postoperative_devices",
    "degenerative",
    "head_neck",
    "spine",
    "other",
)

_FILES = {"CT": "ct.yaml", "MR": "mri.yaml"}


class OntologyError(ValueError):
    """An ontology data file that is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class Diagnosis:
    name: str
    category: str
    guidance: str
    urgent: bool
    parents: tuple[str, ...]


@dataclass(frozen=True)
class Ontology:
    modality: str  # "CT" | "MR"
    diagnoses: tuple[Diagnosis, ...]
    _index: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.diagnoses]

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def __getitem__(self, name: str) -> Diagnosis:
        return self._index[name]

    def ancestors(self, name: str) -> set[str]:
        """All diagnoses implied by ``name`` (transitively), without ``name`` itself."""
        out: set[str] = set()
        stack = list(self._index[name].parents)
        while stack:
            p = stack.pop()
            if p not in out:
                out.add(p)
                stack.extend(self._index[p].parents)
        return out

    def close(self, labels) -> set[str]:
        """``labels`` plus every diagnosis they imply."""
        out = set(labels)
        for name in list(out):
            if name not in self._index:
                raise OntologyError(f"{name!r} is not a {self.modality} diagnosis")
            out |= self.ancestors(name)
        return out


def normalise_modality(modality: str) -> str:
    m = str(modality).strip().upper()
    if m in ("MR", "MRI"):
        return "MR"
    if m == "CT":
        return "CT"
    raise OntologyError(f"unknown modality {modality!r} (expected CT, MR or MRI)")


def _build(modality: str, raw: dict) -> Ontology:
    entries = raw.get("diagnoses") or []
    diagnoses, index = [], {}
    for e in entries:
        d = Diagnosis(
            name=e["name"],
            category=e["category"],
            guidance=str(e["guidance"]).strip(),
            urgent=bool(e.get("urgent", False)),
            parents=tuple(e.get("parents") or ()),
        )
        if d.name in index:
            raise OntologyError(f"{modality}: duplicate diagnosis {d.name!r}")
        if d.category not in CATEGORIES:
            raise OntologyError(f"{modality}: {d.name} has unknown category {d.category!r}")
        index[d.name] = d
        diagnoses.append(d)
    for d in diagnoses:
        for p in d.parents:
            if p not in index:
                raise OntologyError(f"{modality}: parent {p!r} of {d.name} is not a diagnosis")
    onto = Ontology(modality=modality, diagnoses=tuple(diagnoses), _index=index)
    for d in diagnoses:  # a cycle would make every label imply itself
        if d.name in onto.ancestors(d.name):
            raise OntologyError(f"{modality}: implication cycle through {d.name}")
    return onto


@functools.lru_cache(maxsize=None)
def load_ontology(modality: str) -> Ontology:
    """The packaged ontology for ``"CT"`` or ``"MR"``/``"MRI"``."""
    m = normalise_modality(modality)
    text = resources.files("neurovfm.labels").joinpath("data", _FILES[m]).read_text(encoding="utf-8")
    return _build(m, yaml.safe_load(text))
