from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
p = snakemake.params
pipeline.preprocess(snakemake.config, snakemake.input.series, snakemake.input.files, p.export_root, p.out_dir,
                    threads=snakemake.threads)
