from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
p = snakemake.params
pipeline.fig_ed_dataset(snakemake.config, snakemake.input.series, snakemake.input.studies, p.shards_dir,
                        p.labels_dir, snakemake.output.png)
