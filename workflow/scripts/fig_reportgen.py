from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
pipeline.fig_reportgen(snakemake.config, snakemake.params.name, snakemake.input.table, snakemake.output.png)
