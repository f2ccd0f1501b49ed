#!/usr/bin/env bash
# Set up what the tests need (venv, package, optional local SLURM) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e '.[test]'
python -m pytest -q tests
