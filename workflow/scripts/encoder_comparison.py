from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
pipeline.encoder_comparison(snakemake.config, snakemake.wildcards.modality, snakemake.wildcards.a,
                            snakemake.wildcards.b, snakemake.input.a, snakemake.input.b, snakemake.output[0])
