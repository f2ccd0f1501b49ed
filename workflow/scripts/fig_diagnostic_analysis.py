from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    pipeline.fig_diagnostic_analysis(
        snakemake.config, snakemake.wildcards.fig, dict(snakemake.input.items()), snakemake.output.png
    )
