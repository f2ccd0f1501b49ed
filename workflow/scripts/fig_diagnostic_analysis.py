from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
pipeline.fig_diagnostic_analysis(snakemake.config, snakemake.wildcards.fig, dict(snakemake.input.items()),
                                 snakemake.output.png)
