from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
pipeline.pretrain_job(snakemake.config, snakemake.wildcards.model, snakemake.input.train, snakemake.input.stats,
                      snakemake.params.out_dir, gpus=int(snakemake.resources.get("gpu", 0)),
                      nodes=int(snakemake.resources.get("nodes", 1)), threads=snakemake.threads)
