from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    shards = dict(zip(snakemake.params.splits, snakemake.input.shards))
    encoder_pt = snakemake.input.encoder[0] if len(snakemake.input.encoder) else None
    pipeline.features(
        snakemake.config,
        snakemake.wildcards.encoder,
        shards,
        snakemake.input.stats,
        snakemake.params.out_dir,
        encoder_pt=encoder_pt,
        threads=snakemake.threads,
    )
