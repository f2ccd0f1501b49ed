from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
p = snakemake.params
pipeline.ingest(snakemake.config, p.dicom_dir, p.reports_csv, p.out_dir, p.private_dir, threads=snakemake.threads)
