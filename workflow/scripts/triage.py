from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    i, o, p = snakemake.input, snakemake.output, snakemake.params
    pipeline.reportgen_triage(
        snakemake.config,
        p.generations,
        i.frontier,
        i.findings,
        i.reports,
        i.triage_set,
        i.acuity,
        p.cache_dir,
        o.predictions,
        o.validation,
    )
