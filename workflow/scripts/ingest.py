from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    p, cfg = snakemake.params, snakemake.config
    if cfg["input"]["kind"] == "nifti":
        pipeline.ingest(cfg, p.dicom_dir, p.reports_csv, p.out_dir, p.private_dir, threads=snakemake.threads)
    else:  # the K header chunks of ingest_headers
        pipeline.ingest_merge(cfg, list(snakemake.input.chunks), p.reports_csv, p.out_dir, p.private_dir)
