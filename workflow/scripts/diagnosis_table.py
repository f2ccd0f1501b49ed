from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
pipeline.diagnosis_table(snakemake.config, snakemake.wildcards.modality, snakemake.input.predictions,
                         snakemake.input.thresholds, snakemake.output.table, snakemake.output.categories)
