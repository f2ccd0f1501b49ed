from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    i, o = snakemake.input, snakemake.output
    pipeline.reportgen_baselines(
        snakemake.config,
        snakemake.params.model_dir,
        i.train_features,
        i.features,
        i.findings,
        i.reports,
        o.prior,
        o.retrieval,
        o.shuffled,
        threads=snakemake.threads,
    )
