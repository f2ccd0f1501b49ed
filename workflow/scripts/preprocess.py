from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    p = snakemake.params
    pipeline.preprocess(
        snakemake.config,
        snakemake.input.series,
        snakemake.input.files,
        p.export_root,
        p.out_dir,
        threads=snakemake.threads,
        parts=list(snakemake.input.parts),
        index_splits=p.index_splits,
        ledger=p.ledger,
    )
