# neurovfm: the NeuroVFM paper as one DAG, from a PACS export to figures.
#   snakemake --profile profiles/local all      (embedded synthetic health system)
#   snakemake --profile profiles/armis2 all     (paper scale on SLURM)
import os
import sys

from snakemake.utils import min_version

from neurovfm.config import ConfigError, prepared as with_scaling_grid, validate as validate_config
from neurovfm.synth.fingerprint import generator_fingerprint

min_version("9.27")


# snakemake --report: the run's description; every figure and headline table is marked with report() in its rule.
report: "workflow/report/workflow.rst"


# The checkout's defaults, found from the Snakefile (so --directory elsewhere works); a --configfile holds
# only what it changes and is deep-merged over them.
configfile: os.path.join(workflow.basedir, "config.yaml")


try:
    validate_config(config)  # the package's schema check: a few lines naming the key, never a schema dump
    # the scaling grid's models (scaling:, Fig. 2b) become ordinary pretrain.models entries, as for the CLI
    config.update(with_scaling_grid(config))
except ConfigError as _err:
    sys.exit(f"neurovfm: {_err}")


# --sdm apptainer: every job runs in this image (config `container`: e.g. neurovfm.sif, built from
# workflow/envs/neurovfm.def); null, the default, runs jobs in the calling environment (or --sdm conda's env).
container: config.get("container")


include: "workflow/rules/common.smk"
include: "workflow/rules/synth.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/labels.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/probes.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/analyses_diagnostic.smk"
include: "workflow/rules/analyses_anatomy.smk"
include: "workflow/rules/reportgen.smk"
include: "workflow/rules/bundle.smk"
include: "workflow/rules/scaling.smk"


rule all:
    default_target: True
    input:
        all_targets(),
