from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
pipeline.synth_external(snakemake.config, snakemake.output[0], dataset=snakemake.wildcards.dataset)
