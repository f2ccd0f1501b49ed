"""Build a bundle from a finished run (rule ``bundle``; ``results/{run}/bundle/``), written as one folder
(:func:`neurovfm.utils.atomic.atomic_dir`), the manifest last."""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import yaml

from neurovfm.utils.atomic import atomic_dir, write_csv, write_text

from . import layout
from .calibration import fit_calibration
from .card import markdown, model_card, split_counts, today
from .manifest import write_manifest

log = logging.getLogger("neurovfm")


def bundle_encoder(cfg: dict) -> str:
    """``bundle.encoder``, else the first name of ``pretrain.train``."""
    return cfg["bundle"]["encoder"] or cfg["pretrain"]["train"][0]


def bundle_size(cfg: dict) -> int:
    """``bundle.reportgen_size``, else the largest of ``reportgen.sizes`` (the main model)."""
    size = cfg["bundle"]["reportgen_size"]
    return int(size) if size is not None else max(int(s) for s in cfg["reportgen"]["sizes"])


def portable_config(cfg: dict) -> dict:
    """The run's configuration without what names this machine's files: ``paths`` and ``input`` take the
    defaults, ``deid.key_file`` is dropped (the key itself never enters a bundle)."""
    from neurovfm.config import default_config

    defaults = default_config()
    out = copy.deepcopy(cfg)
    out["paths"], out["input"] = copy.deepcopy(defaults["paths"]), copy.deepcopy(defaults["input"])
    out["deid"]["key_file"] = None
    return out


def build_bundle(
    cfg: dict,
    *,
    encoder_pt,
    stats_json,
    probe_dirs: dict,
    reportgen_dir,
    diagnosis_tables: dict,
    studies_csv,
    label_csvs: dict,
    out_dir,
) -> dict:
    """Copy the parts, fit the calibration, write the card and the manifest. ``probe_dirs`` /
    ``diagnosis_tables`` / ``label_csvs``: {ct, mri} -> path. Returns the manifest."""
    import torch

    encoder = bundle_encoder(cfg)
    enc_blob = torch.load(encoder_pt, map_location="cpu", weights_only=False)
    scores = {m: pd.read_csv(diagnosis_tables[m]) for m in layout.MODALITIES}
    with atomic_dir(out_dir) as tmp:
        tmp = Path(tmp)
        write_text(tmp / layout.CONFIG, yaml.safe_dump(portable_config(cfg), sort_keys=False))
        (tmp / layout.ENCODER).parent.mkdir(parents=True)
        shutil.copyfile(encoder_pt, tmp / layout.ENCODER)
        (tmp / layout.STATS).parent.mkdir(parents=True)
        shutil.copyfile(stats_json, tmp / layout.STATS)
        for m in layout.MODALITIES:
            dst = tmp / layout.PROBE_DIR.format(modality=m)
            dst.mkdir(parents=True)
            src = Path(probe_dirs[m])
            shutil.copyfile(src / "probe.pt", dst / "probe.pt")
            shutil.copyfile(src / "thresholds.csv", dst / "thresholds.csv")
            preds = pd.read_csv(src / "predictions.csv", dtype={"study_id": str, "split": str})
            names = [c.split(":", 1)[1] for c in preds.columns if c.startswith("label:")]
            write_csv(dst / "calibration.csv", fit_calibration(preds, names))
        shutil.copytree(
            reportgen_dir,
            tmp / layout.REPORTGEN,
            ignore=lambda d, names: [
                n
                for n in names
                if n.startswith(".")  # Snakemake's marker of a directory output, not part of the model
                or (n not in ("connector.pt", "lm") and Path(d) == Path(reportgen_dir))
            ],
        )
        studies = pd.read_csv(studies_csv, dtype={"study_id": str})
        labels = {m: pd.read_csv(label_csvs[m], dtype={"study_id": str, "split": str}) for m in layout.MODALITIES}
        meta = {
            "encoder": encoder,
            "architecture": enc_blob["model"].get("encoder"),
            "pretraining_steps": int(enc_blob.get("step", 0)),
            "report_generator": f"perceiver connector + {'local LM' if cfg['reportgen']['lm']['path'] else 'tiny Qwen3'}"
            f", trained on {bundle_size(cfg)} curated pairs",
        }
        card = model_card(cfg, meta, split_counts(studies, labels), scores, today())
        write_text(tmp / layout.CARD_JSON, json.dumps(card, indent=1) + "\n")
        write_text(tmp / layout.CARD_MD, markdown(card))
        manifest = write_manifest(tmp, (layout.CARD_JSON, layout.CARD_MD))
    log.info("bundle %s written to %s (%d files)", manifest["bundle_id"], out_dir, len(manifest["files"]))
    return manifest
