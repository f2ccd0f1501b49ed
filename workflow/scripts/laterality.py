from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    pipeline.laterality(
        snakemake.config,
        snakemake.params.probes_dir,
        snakemake.params.features_dir,
        snakemake.params.labels_dir,
        snakemake.input.findings,
        snakemake.input.shards,
        snakemake.input.stats,
        snakemake.params.pretrain_dir,
        snakemake.output.table,
        snakemake.output.studies,
        threads=snakemake.threads,
    )
