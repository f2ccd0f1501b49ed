from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
pipeline.cross_modal(snakemake.config, snakemake.params.probes_dir, snakemake.params.features_dir,
                     snakemake.params.labels_dir, snakemake.output[0])
