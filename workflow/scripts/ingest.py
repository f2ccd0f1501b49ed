from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    p = snakemake.params
    pipeline.ingest(snakemake.config, p.dicom_dir, p.reports_csv, p.out_dir, p.private_dir, threads=snakemake.threads)
