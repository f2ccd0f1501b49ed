from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    i = snakemake.input
    pipeline.reportgen_text_stage(
        snakemake.config, i.shards, i.findings, i.reports, snakemake.output[0], threads=snakemake.threads
    )
