from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
pipeline.synth(snakemake.config, snakemake.output[0], threads=snakemake.threads)
