from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    pipeline.probe(
        snakemake.config,
        snakemake.wildcards.encoder,
        snakemake.wildcards.modality,
        snakemake.params.feature_dir,
        snakemake.input.labels,
        snakemake.input.findings,
        snakemake.params.out_dir,
        threads=snakemake.threads,
    )
