from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
i, o, p = snakemake.input, snakemake.output, snakemake.params
pipeline.reportgen_triage(snakemake.config, p.generations, i.frontier, i.findings, i.reports, i.triage_set, i.acuity,
                          p.cache_dir, o.predictions, o.validation)
