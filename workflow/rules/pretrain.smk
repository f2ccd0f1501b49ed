# Pretraining: one job per model configuration ({model} is a key of pretrain.models), Vol-JEPA, the VideoMAE,
# the HLIP or the DINOv2-on-slices baseline by the model's objective (neurovfm.jepa.train.train dispatches).

# the texts an HLIP model pairs with the studies, by its text.source (read in memory; other models read none)
_PRETRAIN_TEXTS = {
    "report": {"reports": f"{PRIV}/reports.jsonl"},
    "findings": {"findings": f"{RES}/labels/findings.jsonl"},
}


rule pretrain:
    """Vol-JEPA (or VideoMAE, objective: videomae; or HLIP, objective: hlip) pretraining; on GPUs (resources.gpu > 0)
    through torchrun, else one CPU process. Resumes from results/{run}/pretrain/{model}/checkpoint.pt after a kill or a SLURM retry (that resume state,
    and run_config.yaml of a GPU launch, are not outputs: snakemake deletes a job's outputs before it reruns)."""
    input:
        unpack(
            lambda wildcards: _PRETRAIN_TEXTS.get(
                config["pretrain"]["models"][wildcards.model].get("text", {}).get("source"), {}
            )
        ),
        train=f"{RES}/shards/train/index.json",
        stats=f"{RES}/shards/train/stats.json",
    output:
        encoder=f"{RES}/pretrain/{{model}}/encoder.pt",
        metrics=report(
            f"{RES}/pretrain/{{model}}/metrics.csv",
            caption="../report/pretrain_metrics.rst",
            category="Pretraining",
            subcategory="{model}",
        ),
        fractions=f"{RES}/pretrain/{{model}}/context_fractions.csv",
        # the studies it trained on: its data_fraction of the train split's studies and its modalities
        data=f"{RES}/pretrain/{{model}}/data.json",
        studies=f"{RES}/pretrain/{{model}}/studies.csv",
    log:
        f"{RES}/logs/pretrain_{{model}}.log",
    benchmark:
        f"{RES}/benchmarks/pretrain_{{model}}.tsv"
    wildcard_constraints:
        model=MODEL_RE,
    # the main model(s) of pretrain.train are the demo's critical path (export -> pretraining -> everything
    # else): first. A comparison encoder (probes.encoders) feeds only its own probes and tables: far below the
    # features and probes (10), so it fills a core they leave free. One thread each on a laptop: two one-thread
    # jobs side by side do more per second than one two-thread job (the step of the tiny model is 1.6x faster on two
    # threads, not 2x), and the result does not depend on the machine's core count; profiles/armis2 sets its own.
    # Snakemake's scheduler maximises the summed priority of the jobs it starts, so two comparison jobs (2 x 1)
    # never outweigh a feature or probe job (10)
    # (30: above the val and test preprocessing shards, 20, which run beside it; at equal priority Snakemake once
    # started a val shard first and the pretraining 24 s later)
    priority: lambda wildcards: 30 if _main_model(wildcards) else 1
    conda:
        CONDA_ENV
    threads: 1
    resources:
        gpu=0,
        nodes=1,
        mem_mb=8000,
        runtime=60,
    params:
        out_dir=lambda wildcards, output: _parent(output.encoder),
    script:
        "../scripts/pretrain.py"


rule fig_ed_masking:
    """Extended Data Fig. 5a-b: context/target examples and context-fraction histograms by modality."""
    input:
        train=f"{RES}/shards/train/index.json",
        stats=f"{RES}/shards/train/stats.json",
    output:
        png=report(
            f"{RES}/figures/ed_masking.png",
            caption="../report/ed_masking.rst",
            category="Pretraining",
            subcategory="Masking",
        ),
        pdf=f"{RES}/figures/ed_masking.pdf",
        csv=f"{RES}/figures/ed_masking.csv",
    log:
        f"{RES}/logs/fig_ed_masking.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    script:
        "../scripts/fig_ed_masking.py"
