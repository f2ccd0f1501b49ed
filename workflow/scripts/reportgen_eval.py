from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
i, o = snakemake.input, snakemake.output
pipeline.reportgen_eval(snakemake.config, snakemake.params.generations, i.frontier, i.predictions, i.triage_set,
                        i.findings, i.ct, i.mri, o.text, o.triage, o.cost, o.scaling)
