from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    # the inputs are neurovfm.scaling_grid.table_files(config, results_dir): the package maps them by model
    pipeline.scaling_table(snakemake.config, snakemake.params.results_dir, snakemake.output[0])
