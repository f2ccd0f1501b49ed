"""Load and validate a run configuration (the same schema the Snakefile validates with)."""
from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration that does not match the schema (the message names the key)."""


def load_schema() -> dict:
    if not SCHEMA_PATH.is_file():
        raise ConfigError(f"schema not found at {SCHEMA_PATH}: install the package editable from a checkout "
                          "(pip install -e .) so the workflow folder is next to it")
    return yaml.safe_load(SCHEMA_PATH.read_text())


def validate(cfg: dict) -> dict:
    """Raise ConfigError naming the offending key when ``cfg`` does not match the schema."""
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.path))
    if errors:
        lines = []
        for err in errors:
            where = ".".join(str(p) for p in err.absolute_path) or "<top level>"
            lines.append(f"  {where}: {err.message}")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines))
    return cfg


def load_config(path: str | Path) -> dict:
    with open(path) as fh:
        cfg = yaml.safe_load(fh)
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level")
    return validate(cfg)


def run_dir(cfg: dict) -> Path:
    return Path(cfg["paths"]["results"]) / cfg["run"]


def private_dir(cfg: dict) -> Path:
    return Path(cfg["paths"]["private"]) / cfg["run"]


def merged(base: dict, overrides: dict) -> dict:
    """Deep-merge ``overrides`` into a copy of ``base`` (as Snakemake merges --configfile over config.yaml)."""
    out = dict(base)
    for k, v in overrides.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def default_config(**sections) -> dict:
    """The repository's config.yaml with ``sections`` deep-merged over it, validated (for tests and notebooks)."""
    return validate(merged(load_config(SCHEMA_PATH.parent.parent.parent / "config.yaml"), sections))
