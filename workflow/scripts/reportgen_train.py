from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
i = snakemake.input
pipeline.reportgen_train(snakemake.config, snakemake.wildcards.size, i.features, i.findings, i.ct, i.mri, i.reports,
                         snakemake.params.out_dir, threads=snakemake.threads,
                         gpus=int(snakemake.resources.get("gpu", 0)))
