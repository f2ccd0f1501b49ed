"""Open a bundle: a bundle folder, or a Hugging Face-style cache folder holding one (``models--{org}--{name}``
with ``refs/main`` and ``snapshots/{revision}/``; or a folder with a single snapshot). Nothing is fetched: the
files must be on disk. Every file is checked against the manifest before anything is loaded."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pandas as pd
import yaml

from neurovfm.utils.failure import Failed

from . import layout
from .manifest import MANIFEST, verify


def resolve(path: str | Path) -> Path:
    """The folder holding ``manifest.json``: ``path`` itself, the snapshot that ``refs/main`` names, or the only
    snapshot; :class:`Failed` (``bad_input_path``) otherwise."""
    root = Path(path)
    if not root.is_dir():
        raise Failed("bad_input_path", "the bundle path is not a folder", private=f"bundle {path} is not a folder")
    if (root / MANIFEST).is_file():
        return root
    snaps = root / "snapshots"
    if snaps.is_dir():
        ref = root / "refs" / "main"
        if ref.is_file():
            chosen = snaps / ref.read_text().strip()
            if (chosen / MANIFEST).is_file():
                return chosen
        found = sorted(p for p in snaps.iterdir() if (p / MANIFEST).is_file())
        if len(found) == 1:
            return found[0]
    raise Failed(
        "bad_input_path",
        "no bundle manifest in the folder (nor in a single Hugging Face snapshot)",
        private=f"no {MANIFEST} under {path}",
    )


class Bundle:
    """A verified bundle; the parts load on first use."""

    def __init__(self, path: str | Path, verify_files: bool = True):
        self.root = resolve(path)
        self.manifest = verify(self.root) if verify_files else json.loads((self.root / MANIFEST).read_text())
        self.bundle_id = self.manifest["bundle_id"]
        from neurovfm.config import validate

        self.cfg = validate(yaml.safe_load((self.root / layout.CONFIG).read_text()))
        self.card = json.loads((self.root / layout.CARD_JSON).read_text())

    def path(self, rel: str) -> Path:
        return self.root / rel

    @property
    def stats_json(self) -> Path:
        return self.path(layout.STATS)

    @functools.cached_property
    def encoder(self):
        """(frozen encoder on the CPU, its model config), loaded strictly."""
        from neurovfm.features.encoders import freeze
        from neurovfm.jepa.checkpoint import load_encoder

        enc, mcfg = load_encoder(self.path(layout.ENCODER))
        return freeze(enc), mcfg

    @functools.lru_cache(maxsize=None)
    def probe(self, modality: str):
        """(probe in eval mode, metadata with thresholds, calibration table) of ``ct`` or ``mri``."""
        from neurovfm.probes.checkpoint import load_probe

        d = self.path(layout.PROBE_DIR.format(modality=modality))
        model, meta = load_probe(d / "probe.pt")
        calib = pd.read_csv(d / "calibration.csv")
        if list(calib["label"]) != list(meta["class_names"]):
            raise Failed("bad_input_path", "the calibration table does not list the probe's classes")
        return model, meta, calib

    @functools.cached_property
    def generator(self):
        from transformers.utils import logging as hf_logging

        from neurovfm.reportgen.generate import Generator

        hf_logging.disable_progress_bar()  # a progress line per study is the command's output
        return Generator(self.path(layout.REPORTGEN), self.cfg["reportgen"])


def load_bundle(path: str | Path) -> Bundle:
    return Bundle(path)
