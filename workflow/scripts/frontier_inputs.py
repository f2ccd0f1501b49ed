from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
i, o = snakemake.input, snakemake.output
pipeline.reportgen_frontier_inputs(snakemake.config, i.triage_set, i.series, i.shards, i.reports,
                                   snakemake.params.payload_dir, o.counts, o.generations)
