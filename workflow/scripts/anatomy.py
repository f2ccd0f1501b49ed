from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    pipeline.anatomy(
        snakemake.config,
        snakemake.input.shards,
        snakemake.input.stats,
        dict(zip(snakemake.params.encoders, snakemake.input.features)),
        f"{snakemake.input.export}/truth",
        snakemake.output.table,
        snakemake.output.fig3a,
        snakemake.output.fig3b,
        snakemake.output.kmeans,
        threads=snakemake.threads,
        reference=snakemake.input.reference,
    )
