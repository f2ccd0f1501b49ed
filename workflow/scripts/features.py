from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    splits = list(snakemake.params.splits)
    shards = dict(zip(splits, snakemake.input.shards))
    parts = {s: [p for p in snakemake.input.parts if p.rsplit("/", 1)[-1].startswith(f"{s}-")] for s in splits}
    pipeline.features_merge(
        snakemake.config, snakemake.wildcards.encoder, shards, snakemake.input.stats, snakemake.params.out_dir, parts
    )
