from pathlib import Path

from neurovfm import pipeline
from neurovfm.utils.progress import setup_logging

setup_logging(snakemake.log[0])
pipeline.extractor_eval(snakemake.config, Path(snakemake.input.ct).parent, Path(snakemake.input.export) / "truth",
                        snakemake.input.studies, snakemake.output[0])
