from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
pipeline.label_efficiency(snakemake.config, snakemake.params.probes_dir, snakemake.params.labels_dir,
                          snakemake.output.table, snakemake.output.models)
