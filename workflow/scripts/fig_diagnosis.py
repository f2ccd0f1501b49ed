from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
pipeline.fig_diagnosis(snakemake.config, snakemake.wildcards.fig, snakemake.params.tables_dir, snakemake.output.png)
