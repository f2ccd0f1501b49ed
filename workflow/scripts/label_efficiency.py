from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    pipeline.label_efficiency(
        snakemake.config,
        snakemake.params.probes_dir,
        snakemake.params.labels_dir,
        snakemake.output.table,
        snakemake.output.models,
    )
