from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    pipeline.subgroups(
        snakemake.config,
        snakemake.params.probes_dir,
        snakemake.input.studies,
        snakemake.output.table,
        snakemake.output.means,
    )
