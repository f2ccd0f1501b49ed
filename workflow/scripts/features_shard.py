from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    w = snakemake.wildcards
    encoder_pt = snakemake.input.encoder[0] if len(snakemake.input.encoder) else None
    pipeline.features_shard(
        snakemake.config,
        w.encoder,
        w.split,
        int(w.shard),
        snakemake.input.shards,
        snakemake.input.stats,
        snakemake.params.out_dir,
        snakemake.output.part,
        encoder_pt=encoder_pt,
        threads=snakemake.threads,
    )
