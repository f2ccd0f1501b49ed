from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    i = snakemake.input
    pipeline.reportgen_train(
        snakemake.config,
        snakemake.wildcards.size,
        i.features,
        i.findings,
        i.ct,
        i.mri,
        i.reports,
        snakemake.params.out_dir,
        threads=snakemake.threads,
        gpus=int(snakemake.resources.get("gpu", 0)),
        text_stage=i.text_stage,
    )
