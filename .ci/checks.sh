#!/usr/bin/env bash
# CI checks before pytest (README's test command): the machine facts once torch is installed, formatting and lint
# (ruff, snakefmt, snakemake --lint), then the small test DAG (.test/config/config.yaml) through snakemake on
# 2 cores, timed. tests/test_dag_small.py then finds it complete and checks its outputs and its report.
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
snakemake --profile profiles/local --directory .test --configfile .test/config/config.yaml --cores 2 all
echo "test DAG: $(( $(date +%s) - start )) s"
