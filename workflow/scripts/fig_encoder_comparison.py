from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    pipeline.fig_encoder_differences(snakemake.config, snakemake.params.tables_dir, snakemake.output.png)
