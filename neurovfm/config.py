"""Load and validate a run configuration (the same schema the Snakefile validates with)."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = SCHEMA_PATH.parent.parent.parent / "config.yaml"
MAX_ERRORS = 5  # lines of a configuration error; the rest are counted, never dumped
MAX_LINE = 160


class ConfigError(ValueError):
    """A configuration that does not match the schema (the message names the key)."""

    reason = "invalid_config"  # neurovfm.utils.failure code


def load_schema() -> dict:
    if not SCHEMA_PATH.is_file():
        raise ConfigError(
            f"schema not found at {SCHEMA_PATH}: install the package editable from a checkout "
            "(pip install -e .) so the workflow folder is next to it"
        )
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _explain(err) -> str:
    """One line for one schema error: the key, what is wrong, and what is allowed (never the schema)."""
    where = ".".join(str(p) for p in err.absolute_path) or "<top level>"
    if err.validator == "additionalProperties":
        allowed = sorted((err.schema.get("properties") or {}).keys())
        unknown = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
        if unknown:
            at = "" if where == "<top level>" else f"{where}."
            return f"  {', '.join(at + u for u in unknown)}: unknown key; allowed here: {', '.join(allowed)}"
    if err.validator == "enum":
        allowed = ", ".join(map(str, err.validator_value))
        return f"  {where}: {_short(err.instance)} is not allowed; allowed values: {allowed}"
    if err.validator == "required":
        return f"  {where}: {err.message}"
    if err.validator == "not" and err.schema.get("description"):
        return f"  {where}: not allowed here, {err.schema['description']}"
    if err.validator == "type":
        return f"  {where}: {_short(err.instance)} is not of type {err.validator_value}"
    return f"  {where}: {_short(err.message)}"


def _short(value) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."


def validate(cfg: dict) -> dict:
    """Raise ConfigError naming the offending key(s) and the allowed values when ``cfg`` does not match the
    schema (at most MAX_ERRORS lines)."""
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = [_explain(err) for err in errors[:MAX_ERRORS]]
        if len(errors) > MAX_ERRORS:
            lines.append(f"  ... and {len(errors) - MAX_ERRORS} more")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines))
    _check_across_keys(cfg)
    return cfg


def _check_across_keys(cfg: dict) -> None:
    """What the schema cannot say: one key bounded by another."""
    probes = cfg.get("probes") or {}
    if probes.get("selection") == "fixed" and int(probes["fixed_epoch"]) > int(probes["epochs"]):
        raise ConfigError(
            f"invalid configuration:\n  probes.fixed_epoch: {probes['fixed_epoch']} is beyond probes.epochs "
            f"({probes['epochs']}); the kept epoch must be one the probe trains"
        )


def read_mapping(path: str | Path) -> dict:
    """The YAML mapping in ``path`` (not validated)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        with open(path) as fh:
            cfg = yaml.safe_load(fh)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from err
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level")
    return cfg


def load_config(path: str | Path | None = None, grid: bool = True) -> dict:
    """The defaults (the checkout's config.yaml) with ``path`` deep-merged over them, validated: a user file
    holds only what it changes, as with Snakemake's ``--configfile``. ``grid``: with the scaling grid's models
    added to ``pretrain.models`` (:func:`prepared`)."""
    cfg = read_mapping(DEFAULT_CONFIG)
    if path is not None and Path(path).resolve() != DEFAULT_CONFIG.resolve():
        cfg = merged(cfg, read_mapping(path))
    cfg = validate(cfg)
    return prepared(cfg) if grid else cfg


def prepared(cfg: dict) -> dict:
    """A validated ``cfg`` with the models of the ``scaling`` grid added to ``pretrain.models``
    (:func:`neurovfm.scaling_grid.with_grid`, the one place that expands it), checked against the schema again.
    The Snakefile and the CLI both call this, so a grid model (``tiny-d25``) is the same model for both."""
    from neurovfm.scaling_grid import with_grid  # noqa: PLC0415  (it imports ConfigError from here)

    out = with_grid(cfg)
    if out is not cfg:
        try:
            validate(out)
        except ConfigError as err:
            raise ConfigError(f"a model of the scaling grid (scaling.models) is not valid: {err}") from err
    return out


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
    return prepared(validate(merged(load_config(grid=False), sections)))
