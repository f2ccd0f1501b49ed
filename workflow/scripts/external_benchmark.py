from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
pipeline.external_benchmark(snakemake.config, snakemake.wildcards.dataset, snakemake.input.stats, snakemake.output.work,
                            snakemake.params.private, snakemake.output.table, threads=snakemake.threads)
