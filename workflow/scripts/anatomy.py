from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
pipeline.anatomy(snakemake.config, snakemake.input.shards, snakemake.input.stats,
                 dict(zip(snakemake.params.encoders, snakemake.input.features)), f"{snakemake.input.export}/truth",
                 snakemake.output.table, snakemake.output.fig3a, snakemake.output.fig3b, snakemake.output.kmeans,
                 threads=snakemake.threads)
