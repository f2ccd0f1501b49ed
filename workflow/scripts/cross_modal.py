from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    pipeline.cross_modal(
        snakemake.config,
        snakemake.params.probes_dir,
        snakemake.params.features_dir,
        snakemake.params.labels_dir,
        snakemake.output[0],
    )
