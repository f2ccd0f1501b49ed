from pathlib import Path

from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    pipeline.extractor_eval(
        snakemake.config,
        Path(snakemake.input.ct).parent,
        Path(snakemake.input.export) / "truth",
        snakemake.input.studies,
        snakemake.output[0],
    )
