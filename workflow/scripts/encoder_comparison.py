from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (README: When something goes wrong)
    pipeline.encoder_comparison(
        snakemake.config,
        snakemake.wildcards.modality,
        snakemake.wildcards.a,
        snakemake.wildcards.b,
        snakemake.input.a,
        snakemake.input.b,
        snakemake.output[0],
    )
