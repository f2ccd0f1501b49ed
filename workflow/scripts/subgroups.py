from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
pipeline.subgroups(snakemake.config, snakemake.params.probes_dir, snakemake.input.studies, snakemake.output.table,
                   snakemake.output.means)
