# Anatomy (Fig. 3a, 3b, Extended Data Fig. 13e; synthetic runs only: token regions come from the generator's
# anatomy) and external benchmarks (tables/external_{dataset}.csv; analysis.external.datasets).


rule anatomy_reference:
    """Token regions and brain masks of the volumes the anatomy analysis chooses, from the rebuilt synthetic patients
    (no encoder needed, so it runs while the encoders pretrain)."""
    input:
        shards=f"{RES}/shards/{ANATOMY['split']}/index.json",
        export=f"{RES}/pacs_export",
    output:
        f"{RES}/anatomy/reference.npz",
    log:
        f"{RES}/logs/anatomy_reference.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=6000,
        runtime=30,
    script:
        "../scripts/anatomy_reference.py"


rule anatomy:
    """Token regions, t-SNE, cross-volume patch matching and dense k-means brain clusters."""
    input:
        reference=f"{RES}/anatomy/reference.npz",
        shards=f"{RES}/shards/{ANATOMY['split']}/index.json",
        stats=f"{RES}/shards/train/stats.json",
        features=[f"{RES}/features/{e}/{ANATOMY['split']}/index.json" for e in ANATOMY_ENCODERS],
        encoders=_encoder_pts(ANATOMY_ENCODERS),
        export=f"{RES}/pacs_export",
    output:
        table=report(
            f"{RES}/tables/anatomy.csv",
            caption="../report/anatomy_table.rst",
            category="Analyses",
            subcategory="Anatomy",
        ),
        fig3a=report(
            f"{RES}/figures/fig3a.png",
            caption="../report/fig3a.rst",
            category="Analyses",
            subcategory="Anatomy",
        ),
        fig3b=report(
            f"{RES}/figures/fig3b.png",
            caption="../report/fig3b.rst",
            category="Analyses",
            subcategory="Anatomy",
        ),
        kmeans=report(
            f"{RES}/figures/ed_kmeans.png",
            caption="../report/ed_kmeans.rst",
            category="Analyses",
            subcategory="Anatomy",
        ),
        pdfs=[f"{RES}/figures/{name}.pdf" for name in ("fig3a", "fig3b", "ed_kmeans")],
        csvs=[f"{RES}/figures/{name}.csv" for name in ("fig3a", "fig3b", "ed_kmeans")],
    log:
        f"{RES}/logs/anatomy.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=6000,
        runtime=60,
    params:
        encoders=ANATOMY_ENCODERS,
    script:
        "../scripts/anatomy.py"


rule external_benchmark:
    """NIfTI dataset -> ingest -> preprocess -> frozen features -> stratified test, 8-fold CV, fold-ensembled probes."""
    input:
        source=_external_source,
        transfer=_external_transfer,
        stats=f"{RES}/shards/train/stats.json",
        encoders=_encoder_pts(analysis_encoders(config, "external")),
    output:
        # a variable set: per-fold probes for each encoder and task (transfer_from of another dataset reads them)
        work=directory(f"{RES}/external/{{dataset}}/benchmark"),
        # the dataset's file list and reports (private: paths into the user's data)
        private=directory(f"{PRIV}/external/{{dataset}}"),
        table=report(
            f"{RES}/tables/external_{{dataset}}.csv",
            caption="../report/external_benchmark.rst",
            category="Analyses",
            subcategory="External benchmarks",
            labels={"dataset": "{dataset}"},
        ),
    log:
        f"{RES}/logs/external_{{dataset}}.log",
    wildcard_constraints:
        dataset=_names_regex(EXTERNAL_DATASETS),
    # the longest job of the end of the DAG (about a minute with the comparison encoders) and ready only once the
    # last encoder's pretraining ends: at 0 it waited behind the short table and figure jobs and ran last, alone,
    # with one core idle; at 5 it starts as soon as no feature, probe or report-generation job (10-16) needs the core
    priority: 5
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=6000,
        runtime=120,
    params:
        private=lambda wildcards, output: output.private,
    script:
        "../scripts/external_benchmark.py"
