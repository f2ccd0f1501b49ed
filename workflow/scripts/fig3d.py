from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
pipeline.fig3d(snakemake.config, snakemake.params.encoder, snakemake.params.probes_dir, snakemake.input.findings,
               snakemake.input.shards, snakemake.output.png)
