# Vol-JEPA pretraining: one job per model configuration ({model} is a key of pretrain.models).
import re


rule pretrain:
    """Vol-JEPA pretraining; on GPUs (resources.gpu > 0) through torchrun, else one CPU process.
    Resumes from results/{run}/pretrain/{model}/checkpoint.pt after a kill or a SLURM retry."""
    input:
        train=f"{RES}/shards/train/index.json",
        stats=f"{RES}/shards/train/stats.json",
    output:
        encoder=f"{RES}/pretrain/{{model}}/encoder.pt",
        metrics=f"{RES}/pretrain/{{model}}/metrics.csv",
        fractions=f"{RES}/pretrain/{{model}}/context_fractions.csv",
    log:
        f"{RES}/logs/pretrain_{{model}}.log",
    benchmark:
        f"{RES}/benchmarks/pretrain_{{model}}.tsv"
    wildcard_constraints:
        model="|".join(re.escape(m) for m in config["pretrain"]["models"]),
    threads: 2
    resources:
        gpu=0,
        nodes=1,
        mem_mb=8000,
        runtime=60,
    params:
        out_dir=lambda wildcards: f"{RES}/pretrain/{wildcards.model}",
    script:
        "../scripts/pretrain.py"


rule fig_ed_masking:
    """Extended Data Fig. 5a-b: context/target examples and context-fraction histograms by modality."""
    input:
        train=f"{RES}/shards/train/index.json",
        stats=f"{RES}/shards/train/stats.json",
    output:
        png=f"{RES}/figures/ed_masking.png",
        pdf=f"{RES}/figures/ed_masking.pdf",
        csv=f"{RES}/figures/ed_masking.csv",
    log:
        f"{RES}/logs/fig_ed_masking.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    script:
        "../scripts/fig_ed_masking.py"
