#!/usr/bin/env bash
# GPU-ready pretraining check (issue 15, item 5): on one H100 in at most 8 minutes, pretrain a ViT-S on the demo's
# train shards for as many steps as fit, extract train + val features (pretrained and random weights), score the
# pooled CV probes (and the anatomy context diagnostic when benchmarks/anatomy_context.py exists), measure ViT-B
# training MFU per attention back end and MRI feature extraction in studies/s; one table last.
#
#   bash benchmarks/gpu_pretrain_check.sh [driver flags]     # see: python benchmarks/gpu_check.py --help
#
# Reads results/demo (train/val shards, labels); where results/demo does not exist (a bare device machine) it
# builds it first with the workflow's own steps, inside the same time budget. Installs nothing: the python must
# already import torch (with CUDA), jsonschema, iterstrat and pydicom (benchmarks/RESULTS.md says how to carry them).
# PYTHON: the interpreter (default: .venv/bin/python when present, else python3).
# OUT: where details go (default: /tmp/neurovfm-gpu-check-<time>).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" benchmarks/gpu_check.py --require-cuda --build-demo "$@"
