from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    i, o = snakemake.input, snakemake.output
    pipeline.reportgen_frontier_inputs(
        snakemake.config,
        i.triage_set,
        i.series,
        i.shards,
        i.reports,
        snakemake.params.payload_dir,
        o.counts,
        o.generations,
    )
