from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    p = snakemake.params
    pipeline.fig_ed_dataset(
        snakemake.config,
        snakemake.input.series,
        snakemake.input.studies,
        p.shards_dir,
        p.labels_dir,
        snakemake.output.png,
    )
