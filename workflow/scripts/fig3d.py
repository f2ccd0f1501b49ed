from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    pipeline.fig3d(
        snakemake.config,
        snakemake.params.encoder,
        snakemake.params.probes_dir,
        snakemake.input.findings,
        snakemake.input.shards,
        snakemake.output.png,
    )
