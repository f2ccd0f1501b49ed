# Report generation (LLaVA-style model over frozen encoder tokens) and its triage evaluation.
# {encoder}: a feature encoder (reportgen.encoders, default the first name of pretrain.train); {size}: a curated
# training-set size of reportgen.sizes. Indications are read from PRIV and never written under RES.


rule reportgen_text_stage:
    """The demo LM's text-only stage 0, once for every encoder and curated size, from the train shards (it reads no
    image feature, so it runs while the encoders pretrain); a file saying so when there is none (a local LM)."""
    input:
        shards=f"{RES}/shards/train/index.json",
        findings=f"{RES}/labels/findings.jsonl",
        reports=f"{PRIV}/reports.jsonl",
    output:
        f"{RES}/reportgen/text_stage.pt",
    log:
        f"{RES}/logs/reportgen_text_stage.log",
    benchmark:
        f"{RES}/benchmarks/reportgen_text_stage.tsv"
    priority: 15  # the head of the longest chain of the end of the DAG, like reportgen_train
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/reportgen_text_stage.py"


rule reportgen_train:
    """Stage 1 (connector) and stage 2 (connector + LLM) on {size} curated pairs; resumes from checkpoint.pt
    (resume state, not an output: snakemake deletes a job's outputs before it reruns)."""
    input:
        text_stage=f"{RES}/reportgen/text_stage.pt",
        features=f"{RES}/features/{{encoder}}/train/index.json",
        findings=f"{RES}/labels/findings.jsonl",
        ct=f"{RES}/labels/ct.csv",
        mri=f"{RES}/labels/mri.csv",
        reports=f"{PRIV}/reports.jsonl",
    output:
        connector=f"{RES}/reportgen/{{encoder}}/n{{size}}/connector.pt",
        metrics=f"{RES}/reportgen/{{encoder}}/n{{size}}/metrics.csv",
        curated=f"{RES}/reportgen/{{encoder}}/n{{size}}/curated.csv",
        # the language model and tokenizer as save_pretrained writes them (full weights, or a LoRA adapter;
        # sharded at scale): a variable set of files
        lm=directory(f"{RES}/reportgen/{{encoder}}/n{{size}}/lm"),
    log:
        f"{RES}/logs/reportgen_train_{{encoder}}_n{{size}}.log",
    benchmark:
        f"{RES}/benchmarks/reportgen_train_{{encoder}}_n{{size}}.tsv"
    wildcard_constraints:
        encoder=ENCODER_RE,
        size=r"\d+",
    # the longest chain of the end of the DAG (train, generate, evaluate): before the probes; the largest size first
    # (its run is the longest, and the baselines wait on it)
    priority: lambda wildcards: 16 if int(wildcards.size) == max(RG_SIZES) else 15
    conda:
        CONDA_ENV
    threads: 1  # measured on the demo: about one core in use with two (so two jobs run side by side)
    resources:
        gpu=config["reportgen"]["distributed"]["gpus"],  # > 0: torchrun over that many GPUs (FSDP or DDP)
        mem_mb=8000,
        runtime=60,
    params:
        out_dir=lambda wildcards, output: _parent(output.connector),
    script:
        "../scripts/reportgen_train.py"


rule reportgen_generate:
    """Findings (JSON lists, malformed answers kept) for the generation split, with and without indication."""
    input:
        connector=f"{RES}/reportgen/{{encoder}}/n{{size}}/connector.pt",
        lm=f"{RES}/reportgen/{{encoder}}/n{{size}}/lm",
        features=f"{RES}/features/{{encoder}}/{RG_SPLIT}/index.json",
        findings=f"{RES}/labels/findings.jsonl",
        reports=f"{PRIV}/reports.jsonl",
    output:
        f"{RES}/reportgen/{{encoder}}/n{{size}}/generations.jsonl",
    log:
        f"{RES}/logs/reportgen_generate_{{encoder}}_n{{size}}.log",
    benchmark:
        f"{RES}/benchmarks/reportgen_generate_{{encoder}}_n{{size}}.tsv"
    wildcard_constraints:
        encoder=ENCODER_RE,
        size=r"\d+",
    priority: 15  # on the longest chain of the end of the DAG (after reportgen_train)
    conda:
        CONDA_ENV
    threads: 1  # measured on the demo: about one core in use with two (so two jobs run side by side)
    resources:
        gpu=0,
        mem_mb=8000,
        runtime=60,
    params:
        model_dir=lambda wildcards, input: _parent(input.connector),
    script:
        "../scripts/reportgen_generate.py"


rule reportgen_baselines:
    """Prior-only (the modality's most frequent training findings), retrieval (the nearest training study's findings
    by pooled frozen features) and the shuffled-image control (the model answering with another study's series)."""
    input:
        connector=f"{RES}/reportgen/{{encoder}}/n{{size}}/connector.pt",
        lm=f"{RES}/reportgen/{{encoder}}/n{{size}}/lm",
        train_features=f"{RES}/features/{{encoder}}/train/index.json",
        features=f"{RES}/features/{{encoder}}/{RG_SPLIT}/index.json",
        findings=f"{RES}/labels/findings.jsonl",
        reports=f"{PRIV}/reports.jsonl",
    output:
        prior=f"{RES}/reportgen/{{encoder}}/n{{size}}/baselines/prior_only.jsonl",
        retrieval=f"{RES}/reportgen/{{encoder}}/n{{size}}/baselines/retrieval.jsonl",
        shuffled=f"{RES}/reportgen/{{encoder}}/n{{size}}/baselines/shuffled_image.jsonl",
    log:
        f"{RES}/logs/reportgen_baselines_{{encoder}}_n{{size}}.log",
    wildcard_constraints:
        encoder=ENCODER_RE,
        size=r"\d+",
    priority: 15  # on the longest chain of the end of the DAG (after reportgen_train)
    conda:
        CONDA_ENV
    threads: 1  # measured on the demo: about one core in use with two (so two jobs run side by side)
    resources:
        gpu=0,
        mem_mb=8000,
        runtime=60,
    params:
        model_dir=lambda wildcards, input: _parent(input.connector),
    script:
        "../scripts/reportgen_baselines.py"


rule triage_set:
    """Balanced triage test set (equal studies per modality and acuity) and the acuity of every reported study."""
    input:
        findings=f"{RES}/labels/findings.jsonl",
        ct=f"{RES}/labels/ct.csv",
        mri=f"{RES}/labels/mri.csv",
        studies=f"{RES}/ingest/studies.csv",
        # the studies with a series in the split's shards: the same set for every encoder, drawn while they pretrain
        shards=f"{RES}/shards/{RG_SPLIT}/index.json",
        export=synthetic_export(),
    output:
        triage_set=f"{RES}/tables/reportgen_triage_set.csv",
        acuity=f"{RES}/reportgen/acuity.csv",
    log:
        f"{RES}/logs/triage_set.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        truth_dir=rg_truth_dir,
    script:
        "../scripts/triage_set.py"


rule frontier_inputs:
    """2D payloads for frontier models (private); sent, and answers recorded, only for configured endpoints."""
    input:
        triage_set=f"{RES}/tables/reportgen_triage_set.csv",
        series=f"{RES}/ingest/series.csv",
        shards=f"{RES}/shards/{RG_SPLIT}/index.json",
        reports=f"{PRIV}/reports.jsonl",
    output:
        counts=f"{RES}/tables/reportgen_frontier_inputs.csv",
        generations=f"{RES}/reportgen/frontier/generations.jsonl",
        # one payload per study and model (private: the slices carry pixel data of the studies)
        payloads=directory(f"{PRIV}/reportgen/frontier"),
    log:
        f"{RES}/logs/frontier_inputs.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        payload_dir=lambda wildcards, output: output.payloads,
    script:
        "../scripts/frontier_inputs.py"


rule triage:
    """Every judge on the reference findings (validation) and on every model's answers for the triage set."""
    input:
        unpack(rg_generation_inputs),
        frontier=f"{RES}/reportgen/frontier/generations.jsonl",
        findings=f"{RES}/labels/findings.jsonl",
        reports=f"{PRIV}/reports.jsonl",
        triage_set=f"{RES}/tables/reportgen_triage_set.csv",
        acuity=f"{RES}/reportgen/acuity.csv",
    output:
        predictions=f"{RES}/reportgen/triage_predictions.csv",
        validation=f"{RES}/tables/reportgen_judge_validation.csv",
    log:
        f"{RES}/logs/triage.log",
    priority: 15  # on the longest chain of the end of the DAG (after reportgen_train)
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        generations=rg_generations(),
        # judges' answers kept across runs (a cache, not an output: snakemake would delete it before a rerun)
        cache_dir=f"{PRIV}/reportgen/judge_cache",
    script:
        "../scripts/triage.py"


rule reportgen_eval:
    """Text metrics, triage accuracy (per model, judge, modality, pathology, indication), cost and scaling."""
    input:
        unpack(rg_generation_inputs),
        frontier=f"{RES}/reportgen/frontier/generations.jsonl",
        predictions=f"{RES}/reportgen/triage_predictions.csv",
        triage_set=f"{RES}/tables/reportgen_triage_set.csv",
        findings=f"{RES}/labels/findings.jsonl",
        ct=f"{RES}/labels/ct.csv",
        mri=f"{RES}/labels/mri.csv",
    output:
        text=report(
            f"{RES}/tables/reportgen_text_metrics.csv",
            caption="../report/reportgen_text_metrics.rst",
            category="Report generation",
            subcategory="Tables",
        ),
        triage=report(
            f"{RES}/tables/reportgen_triage.csv",
            caption="../report/reportgen_triage.rst",
            category="Report generation",
            subcategory="Tables",
        ),
        cost=f"{RES}/tables/reportgen_cost.csv",
        scaling=f"{RES}/tables/reportgen_scaling.csv",
        # label-level precision / recall / F1 (report extractor on both sides) and the main model minus each
        # baseline (paired bootstrap)
        labels=f"{RES}/tables/reportgen_labels.csv",
        differences=f"{RES}/tables/reportgen_differences.csv",
    log:
        f"{RES}/logs/reportgen_eval.log",
    priority: 15  # on the longest chain of the end of the DAG (after reportgen_train)
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        generations=rg_generations(),
    script:
        "../scripts/reportgen_eval.py"


RG_FIGURES = {"fig4b": "triage", "fig4c": "triage", "fig4d": "text_metrics", "ed_reportgen_scaling": "scaling"}

for _name, _table in RG_FIGURES.items():

    rule:
        name:
            _name
        input:
            table=f"{RES}/tables/reportgen_{_table}.csv",
        output:
            png=report(
                f"{RES}/figures/{_name}.png",
                caption=f"../report/{_name}.rst",
                category="Report generation",
                subcategory="Figures",
            ),
            pdf=f"{RES}/figures/{_name}.pdf",
            csv=f"{RES}/figures/{_name}.csv",
        log:
            f"{RES}/logs/{_name}.log",
        conda:
            CONDA_ENV
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            name=_name,
        script:
            "../scripts/fig_reportgen.py"
