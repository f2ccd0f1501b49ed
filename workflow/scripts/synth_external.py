from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    pipeline.synth_external(
        snakemake.config, snakemake.output[0], dataset=snakemake.wildcards.dataset, workers=snakemake.threads
    )
