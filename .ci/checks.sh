#!/usr/bin/env bash
# CI checks before pytest (README's test command): the machine facts once torch is installed, formatting and lint
# (ruff, snakefmt, snakemake --lint), then the small test DAG (.test/config/config.yaml) through snakemake on
# 2 cores, timed, with the model bundle (tests/conftest.py's TEST_TARGETS). tests/test_dag_small.py then finds it
# complete and checks its outputs and its report; tests/test_predict.py predicts with its bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
bash .ci/machine-facts.sh
echo "== lint =="
ruff check .
ruff format --check .
snakefmt --check .
snakemake --lint
echo "== test DAG (.test/config/config.yaml, 2 cores) =="
start=$(date +%s)
snakemake --profile profiles/local --directory .test --configfile .test/config/config.yaml --cores 2 all \
    results/demo/bundle/MODEL_CARD.md
echo "test DAG: $(( $(date +%s) - start )) s"
