"""The scaling grid of Fig. 2b: the ``scaling:`` section expanded into ordinary ``pretrain.models`` entries.

``scaling.models`` names existing models, one per encoder size; each is the grid's full-data point of its size.
For every other fraction ``f`` of ``scaling.data_fractions`` the grid adds a copy of that model with
``data_fraction: f``, named ``{model}-d{percent}`` (``tiny-d25``, ``base-d5``, ``small-d2.5``: the percentage
written with up to 6 significant digits). ``scaling.unimodal`` names one of them: it gets a CT-only and an MRI-only
copy (``modalities: [CT]`` / ``[MR]``), named ``{model}-ct`` and ``{model}-mri``, trained for the same
``pretrain.steps`` as the multimodal model they are compared with. Every generated name is a valid model name
(the schema's pattern, never ``random``, ``_vs_`` or a trailing ``_categories``), so the grid's models are plain
``{model}`` / ``{encoder}`` wildcards of the DAG.

:func:`with_grid` is the one place this expansion happens; the Snakefile and the CLI (``neurovfm.config``) both
call it, so a rule and a person training ``tiny-d25`` by hand train the same model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from neurovfm.config import ConfigError

GRID_MODALITIES = ("CT", "MR")
UNIMODAL = {"ct": ("CT",), "mri": ("MR",)}  # table modality -> the unimodal model's modalities
SIZE_ORDER = ("micro", "tiny", "small", "medium", "base")  # neurovfm.models.vit.VIT_SIZES, smallest first
_RESERVED = ("data_fraction", "modalities")


@dataclass(frozen=True)
class GridModel:
    """One model of the grid: its name, encoder size, data fraction and modalities, and its role (``grid``: a
    point of the data/size grid; ``unimodal``: a CT-only or MRI-only comparison model)."""

    name: str
    template: str  # the scaling.models entry it copies (itself for the full-data point)
    size: str
    data_fraction: float
    modalities: tuple[str, ...]
    role: str

    @property
    def generated(self) -> bool:
        return self.name != self.template


def percent_label(fraction: float) -> str:
    """``0.05`` -> ``"5"``, ``0.025`` -> ``"2.5"``: the fraction in percent, up to 6 significant digits."""
    return format(round(float(fraction) * 100.0, 6), "g")


def fraction_name(model: str, fraction: float) -> str:
    return f"{model}-d{percent_label(fraction)}"


def unimodal_name(model: str, modality: str) -> str:
    """``modality``: ``ct`` or ``mri`` (the tables' spelling)."""
    return f"{model}-{modality}"


def _section(cfg: dict) -> dict | None:
    sec = cfg.get("scaling")
    return sec if sec and sec.get("models") else None


def grid(cfg: dict) -> list[GridModel]:
    """The grid's models, sizes in ``scaling.models`` order and fractions ascending, then the unimodal pair.
    Raises ConfigError for a model that is not a key of ``pretrain.models``, two models of one size, a model that
    already sets ``data_fraction`` or ``modalities``, fractions whose names collide, or a ``unimodal`` model
    outside ``scaling.models``."""
    sec = _section(cfg)
    if sec is None:
        return []
    models = cfg["pretrain"]["models"]
    names = list(sec["models"])
    sizes: dict[str, str] = {}
    for name in names:
        if name not in models:
            raise ConfigError(f"scaling.models: {name!r} is not a key of pretrain.models ({sorted(models)})")
        entry = models[name]
        set_here = [k for k in _RESERVED if k in entry]
        if set_here:
            raise ConfigError(
                f"scaling.models: {name!r} sets {', '.join(set_here)}; the grid's models must start from the whole "
                "train split (the grid sets the fraction and the modalities)"
            )
        size = entry["encoder"]
        if size in sizes:
            raise ConfigError(
                f"scaling.models: {sizes[size]!r} and {name!r} are both of size {size}; list one per size"
            )
        sizes[size] = name
    fractions = sorted({float(f) for f in sec["data_fractions"]})
    labels = [percent_label(f) for f in fractions]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"scaling.data_fractions {fractions} give the same model name twice (percent {labels})")
    out = []
    for name in names:
        size = models[name]["encoder"]
        for f in fractions:
            full = f >= 1.0
            out.append(GridModel(name if full else fraction_name(name, f), name, size, f, GRID_MODALITIES, "grid"))
    uni = sec.get("unimodal")
    if uni is not None:
        if uni not in names:
            raise ConfigError(f"scaling.unimodal: {uni!r} is not one of scaling.models ({names})")
        if models[uni].get("objective") == "hlip":
            raise ConfigError(
                f"scaling.unimodal: {uni!r} is an HLIP model, whose batches pair CT and MRI halves: it cannot "
                "train on one modality"
            )
        for mod, mods in UNIMODAL.items():
            out.append(GridModel(unimodal_name(uni, mod), uni, models[uni]["encoder"], 1.0, mods, "unimodal"))
    return out


def entry(cfg: dict, model: GridModel) -> dict:
    """The ``pretrain.models`` entry of a grid model: its template with ``data_fraction`` below 1 and a single
    modality when it has one (the defaults, 1 and both, are left out)."""
    out = copy.deepcopy(cfg["pretrain"]["models"][model.template])
    if model.data_fraction < 1.0:
        out["data_fraction"] = float(model.data_fraction)
    if tuple(model.modalities) != GRID_MODALITIES:
        out["modalities"] = list(model.modalities)
    return out


def with_grid(cfg: dict) -> dict:
    """``cfg`` (a copy) with the grid's generated models added to ``pretrain.models``. Idempotent: a generated name
    already present with the same entry is kept; present with another entry, it is a ConfigError (rename that
    model). A public encoder (``encoders``) of the same name is a ConfigError too."""
    models = grid(cfg)
    if not models:
        return cfg
    out = dict(cfg)
    out["pretrain"] = dict(cfg["pretrain"])
    table = dict(cfg["pretrain"]["models"])
    public = set(cfg.get("encoders") or {})
    for m in models:
        if not m.generated:
            continue
        new = entry(cfg, m)
        if m.name in table and table[m.name] != new:
            raise ConfigError(
                f"pretrain.models.{m.name}: the scaling grid generates a model of this name ({m.template} with "
                f"data_fraction {m.data_fraction:g}, modalities {list(m.modalities)}) but the key holds another "
                "model; rename it"
            )
        if m.name in public:
            raise ConfigError(f"encoders.{m.name}: the scaling grid generates a pretrain model of this name; rename it")
        table[m.name] = new
    out["pretrain"]["models"] = table
    return out


def grid_names(cfg: dict) -> list[str]:
    """Every model the ``scaling`` target pretrains, probes and tabulates, in :func:`grid` order."""
    return list(dict.fromkeys(m.name for m in grid(cfg)))


def unimodal_pairs(cfg: dict) -> dict[str, tuple[str, str]]:
    """``{"ct": (multimodal, CT-only), "mri": (multimodal, MRI-only)}``, or {} without ``scaling.unimodal``."""
    pairs = {}
    for m in grid(cfg):
        if m.role == "unimodal":
            mod = next(k for k, v in UNIMODAL.items() if v == m.modalities)
            pairs[mod] = (m.template, m.name)
    return pairs


def size_rank(size: str) -> int:
    return SIZE_ORDER.index(size) if size in SIZE_ORDER else len(SIZE_ORDER)


def table_files(cfg: dict, results: str) -> dict[str, dict]:
    """The files Fig. 2b's table reads under ``results`` (``results/{run}``), keyed: ``categories`` {(model,
    modality): category table} (both modalities for the grid's models, its own for a unimodal one),
    ``predictions`` {(model, modality): predictions.csv} (the grid's models: the fits' paired bootstrap) and
    ``comparisons`` {modality: diagnosis_{modality}_{multimodal}_vs_{unimodal}.csv}. The rule
    (:func:`table_inputs`) and :func:`neurovfm.pipeline.scaling_table` both take their paths from here."""
    pairs = unimodal_pairs(cfg)
    own = {uni: mod for mod, (_, uni) in pairs.items()}
    categories, predictions = {}, {}
    for m in grid(cfg):
        for mod in [own[m.name]] if m.role == "unimodal" else ["ct", "mri"]:
            categories[(m.name, mod)] = f"{results}/tables/diagnosis_{mod}_{m.name}_categories.csv"
            if m.role == "grid":
                predictions[(m.name, mod)] = f"{results}/probes/{m.name}/{mod}/predictions.csv"
    comparisons = {mod: f"{results}/tables/diagnosis_{mod}_{a}_vs_{b}.csv" for mod, (a, b) in pairs.items()}
    return {"categories": categories, "predictions": predictions, "comparisons": comparisons}


def table_inputs(cfg: dict, results: str) -> dict[str, list[str]]:
    """:func:`table_files` as lists (the rule's named inputs)."""
    return {k: list(v.values()) for k, v in table_files(cfg, results).items()}
