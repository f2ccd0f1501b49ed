from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    pipeline.encoder_comparison(
        snakemake.config,
        snakemake.wildcards.modality,
        snakemake.wildcards.a,
        snakemake.wildcards.b,
        snakemake.input.a,
        snakemake.input.b,
        snakemake.output[0],
    )
