from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
pipeline.labels(snakemake.config, snakemake.input.reports, snakemake.input.studies,
                snakemake.params.out_dir, snakemake.params.private_dir)
