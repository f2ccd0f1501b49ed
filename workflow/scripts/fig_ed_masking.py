from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    pipeline.fig_ed_masking(snakemake.config, snakemake.input.train, snakemake.input.stats, snakemake.output.png)
