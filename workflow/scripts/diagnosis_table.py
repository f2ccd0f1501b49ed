from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    pipeline.diagnosis_table(
        snakemake.config,
        snakemake.wildcards.modality,
        snakemake.input.predictions,
        snakemake.input.thresholds,
        snakemake.output.table,
        snakemake.output.categories,
    )
