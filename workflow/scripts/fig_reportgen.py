from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    pipeline.fig_reportgen(snakemake.config, snakemake.params.name, snakemake.input.table, snakemake.output.png)
