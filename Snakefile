# neurovfm: the NeuroVFM paper as one DAG, from a PACS export to figures.
#   snakemake --profile profiles/local all      (embedded synthetic health system)
#   snakemake --profile profiles/armis2 all     (paper scale on SLURM)
from snakemake.utils import min_version, validate

min_version("9.27")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


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


rule all:
    input:
        all_targets(),
    default_target: True
