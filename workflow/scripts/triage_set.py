from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    i, o = snakemake.input, snakemake.output
    pipeline.reportgen_triage_set(
        snakemake.config,
        i.findings,
        i.ct,
        i.mri,
        i.shards,
        snakemake.params.truth_dir,
        i.studies,
        o.triage_set,
        o.acuity,
    )
