from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    p, w = snakemake.params, snakemake.wildcards
    pipeline.preprocess_shard(
        snakemake.config,
        snakemake.input.series,
        snakemake.input.files,
        p.export_root,
        p.out_dir,
        w.split,
        int(w.shard),
        snakemake.output.part,
        threads=snakemake.threads,
    )
