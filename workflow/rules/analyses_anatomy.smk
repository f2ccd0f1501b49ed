# Anatomy (Fig. 3a, 3b, Extended Data Fig. 13e; synthetic runs only: token regions come from the generator's
# anatomy) and external benchmarks (tables/external_{dataset}.csv; analysis.external.datasets).
ANATOMY = config["analysis"]["anatomy"]
ANATOMY_ENCODERS = list(ANATOMY["encoders"] or config["probes"]["encoders"] or [*config["pretrain"]["train"], "random"])
EXTERNAL = config["analysis"]["external"]
EXTERNAL_DATASETS = list(EXTERNAL["datasets"])


def _encoder_pts(encoders):
    return [f"{RES}/pretrain/{e}/encoder.pt" for e in encoders if e != "random"]


rule anatomy:
    """Token regions, t-SNE, cross-volume patch matching and dense k-means brain clusters."""
    input:
        shards=f"{RES}/shards/{ANATOMY['split']}/index.json",
        stats=f"{RES}/shards/train/stats.json",
        features=[f"{RES}/features/{e}/{ANATOMY['split']}/index.json" for e in ANATOMY_ENCODERS],
        encoders=_encoder_pts(ANATOMY_ENCODERS),
        export=f"{RES}/pacs_export",
    output:
        table=f"{RES}/tables/anatomy.csv",
        fig3a=f"{RES}/figures/fig3a.png",
        fig3b=f"{RES}/figures/fig3b.png",
        kmeans=f"{RES}/figures/ed_kmeans.png",
    log:
        f"{RES}/logs/anatomy.log",
    threads: 1
    resources:
        mem_mb=6000,
        runtime=60,
    params:
        encoders=ANATOMY_ENCODERS,
    script:
        "../scripts/anatomy.py"


def _external_source(wildcards):
    d = EXTERNAL["datasets"][wildcards.dataset]
    return [f"{RES}/external/{wildcards.dataset}/source"] if d["nifti_dir"] is None or d["csv"] is None else []


def _external_transfer(wildcards):
    return [
        f"{RES}/external/{t['dataset']}/benchmark" for t in EXTERNAL["datasets"][wildcards.dataset]["transfer_from"]
    ]


rule external_benchmark:
    """NIfTI dataset -> ingest -> preprocess -> frozen features -> stratified test, 8-fold CV, fold-ensembled probes."""
    input:
        source=_external_source,
        transfer=_external_transfer,
        stats=f"{RES}/shards/train/stats.json",
        encoders=_encoder_pts(EXTERNAL["encoders"] or ANATOMY_ENCODERS),
    output:
        work=directory(f"{RES}/external/{{dataset}}/benchmark"),
        table=f"{RES}/tables/external_{{dataset}}.csv",
    log:
        f"{RES}/logs/external_{{dataset}}.log",
    wildcard_constraints:
        dataset="|".join(EXTERNAL_DATASETS),
    threads: 1
    resources:
        mem_mb=6000,
        runtime=120,
    params:
        private=lambda wildcards: f"{PRIV}/external/{wildcards.dataset}",
    script:
        "../scripts/external_benchmark.py"
