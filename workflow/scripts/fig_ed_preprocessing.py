from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    p = snakemake.params
    pipeline.fig_ed_preprocessing(
        snakemake.config,
        snakemake.input.series,
        snakemake.input.files,
        p.export_root,
        p.shards_dir,
        snakemake.output.png,
    )
