from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
i, o = snakemake.input, snakemake.output
pipeline.reportgen_triage_set(snakemake.config, i.findings, i.ct, i.mri, i.features, snakemake.params.truth_dir,
                              i.studies, o.triage_set, o.acuity)
