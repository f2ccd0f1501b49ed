from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    pipeline.external_benchmark(
        snakemake.config,
        snakemake.wildcards.dataset,
        snakemake.input.stats,
        snakemake.output.work,
        snakemake.params.private,
        snakemake.output.table,
        threads=snakemake.threads,
    )
