from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
i = snakemake.input
pipeline.reportgen_generate(snakemake.config, snakemake.params.model_dir, i.features, i.findings, i.reports,
                            snakemake.output[0], threads=snakemake.threads)
