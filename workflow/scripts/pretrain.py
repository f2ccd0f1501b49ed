from neurovfm import pipeline
from neurovfm.utils.stage import snakemake_step

with snakemake_step(snakemake):  # one-line, PHI-free failures (docs/troubleshooting.md)
    pipeline.pretrain_job(
        snakemake.config,
        snakemake.wildcards.model,
        snakemake.input.train,
        snakemake.input.stats,
        snakemake.params.out_dir,
        gpus=int(snakemake.resources.get("gpu", 0)),
        nodes=int(snakemake.resources.get("nodes", 1)),
        threads=snakemake.threads,
        findings=snakemake.input.get("findings"),  # HLIP models only (their text.source)
        reports=snakemake.input.get("reports"),
    )
