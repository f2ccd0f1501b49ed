from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    pipeline.ingest_headers(
        snakemake.config,
        snakemake.params.dicom_dir,
        snakemake.input.files,
        snakemake.output.headers,
        threads=snakemake.threads,
    )
