"""docs/configuration.md is what ``python -m neurovfm.config_doc`` writes from the schema and config.yaml."""

from pathlib import Path

from neurovfm.config import load_schema
from neurovfm.config_doc import config_comments, render, rows

ROOT = Path(__file__).resolve().parent.parent


def test_committed_reference_is_current():
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == render(), (
        "docs/configuration.md is out of date: run `python -m neurovfm.config_doc > docs/configuration.md`"
    )


def test_every_schema_leaf_is_listed_with_its_default():
    import yaml

    defaults = yaml.safe_load((ROOT / "config.yaml").read_text())
    listed = {path: default for path, allowed, default, _ in rows(load_schema(), defaults, {}) if allowed != "section"}
    assert listed["pretrain.steps"] == f"`{defaults['pretrain']['steps']}`"
    assert listed["probes.kind"] == "`classify_then_aggregate`"
    assert listed["reportgen.stage1.lr"] == f"`{defaults['reportgen']['stage1']['lr']}`"  # through a $ref


def test_comments_follow_nesting_and_continuations():
    text = "a:            # top\n  b: 1       # inner one\n             # and its next line\n  # heading\n  c: 2\n"
    assert config_comments(text) == {"a": "top", "a.b": "inner one and its next line"}
