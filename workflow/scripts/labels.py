from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    pipeline.labels(
        snakemake.config,
        snakemake.input.reports,
        snakemake.input.studies,
        snakemake.params.out_dir,
        snakemake.params.private_dir,
    )
