from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
pipeline.probe(snakemake.config, snakemake.wildcards.encoder, snakemake.wildcards.modality, snakemake.params.feature_dir,
               snakemake.input.labels, snakemake.input.findings, snakemake.params.out_dir, threads=snakemake.threads)
