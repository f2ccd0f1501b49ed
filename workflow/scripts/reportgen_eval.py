from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    i, o = snakemake.input, snakemake.output
    pipeline.reportgen_eval(
        snakemake.config,
        snakemake.params.generations,
        i.frontier,
        i.predictions,
        i.triage_set,
        i.findings,
        i.ct,
        i.mri,
        o.text,
        o.triage,
        o.cost,
        o.scaling,
        o.labels,
        o.differences,
    )
