"""Where each part lives inside a bundle folder (shared by the writer and the loader)."""

from __future__ import annotations

CONFIG = "config.yaml"  # the run's validated configuration (paths and inputs reset to defaults)
ENCODER = "encoder/encoder.pt"  # neurovfm.jepa.checkpoint.save_encoder format
STATS = "preprocess/stats.json"  # train-split intensity statistics (feature normalisation)
PROBE_DIR = "probes/{modality}"  # probe.pt (weights, thresholds), thresholds.csv, calibration.csv
PROBE_FILES = ("probe.pt", "thresholds.csv", "calibration.csv")
REPORTGEN = "reportgen"  # connector.pt and lm/ (weights, config, tokenizer), as a training folder
CARD_MD, CARD_JSON = "MODEL_CARD.md", "model_card.json"
MODALITIES = ("ct", "mri")
