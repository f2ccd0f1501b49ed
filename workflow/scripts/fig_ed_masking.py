from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
pipeline.fig_ed_masking(snakemake.config, snakemake.input.train, snakemake.input.stats, snakemake.output.png)
