"""A trained run packed as one folder (the model bundle): encoder, probes with thresholds and calibration,
report generator, preprocessing statistics and configuration, model card, and a sha256 manifest that loading
checks. :mod:`.write` builds it from ``results/{run}/``; :mod:`.load` opens it (a path, or a Hugging Face-style
cache folder)."""
