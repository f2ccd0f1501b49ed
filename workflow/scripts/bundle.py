from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    i, p = snakemake.input, snakemake.params
    pipeline.bundle(
        snakemake.config, i.encoder, i.stats, p.probes_dir, p.reportgen_dir, i.tables, i.studies, i.labels, p.out_dir
    )
