from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    pipeline.anatomy_reference(
        snakemake.config,
        snakemake.input.shards,
        f"{snakemake.input.export}/truth",
        snakemake.output[0],
        threads=snakemake.threads,
    )
