# One job per output shard (store.shards: split -> number of shards), then two merges: the train split's index and
# statistics as soon as its shards are done (pretraining starts while the other splits are written), then the
# other indexes, the ledger and the summary (byte-identical to a single job; refuse a missing, extra or stale shard).


rule preprocess_shard:
    """Resample (1 x 1 x 4 mm), window, quantise and mask the series of one shard of one split into its
    memory-mapped shard file; the part file records the shard's fingerprint for the merge."""
    input:
        series=f"{RES}/ingest/series.csv",
        files=f"{PRIV}/files.csv",
    output:
        part=f"{RES}/shards/parts/{{split}}-{{shard}}.json",
    log:
        f"{RES}/logs/preprocess_shard_{{split}}-{{shard}}.log",
    benchmark:
        f"{RES}/benchmarks/preprocess_shard_{{split}}-{{shard}}.tsv"
    wildcard_constraints:
        split=SPLITS_RE,
        shard=r"\d+",
    # the demo's critical path (export -> train shards -> pretraining): train first, then the other splits, all
    # before the features and side jobs
    priority: lambda wildcards: 25 if wildcards.split == "train" else 20
    conda:
        CONDA_ENV
    threads: 8  # worker processes (profiles/local: 1, so that the val and test shards run beside the pretraining)
    resources:
        mem_mb=16000,
        runtime=720,
    params:
        export_root=lambda wildcards: pixel_root(),
        out_dir=lambda wildcards, output: _parent(output.part, 2),
    script:
        "../scripts/preprocess_shard.py"


rule preprocess_train:
    """Merge the train split's shards: its index.json and the train statistics, before the other splits."""
    input:
        series=f"{RES}/ingest/series.csv",
        files=f"{PRIV}/files.csv",
        parts=TRAIN_SHARD_PARTS,
    output:
        train=f"{RES}/shards/train/index.json",
        stats=f"{RES}/shards/train/stats.json",
    log:
        f"{RES}/logs/preprocess_train.log",
    benchmark:
        f"{RES}/benchmarks/preprocess_train.tsv"
    priority: 25  # the demo's critical path: pretraining waits on it
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=16000,
        runtime=120,
    params:
        export_root=lambda wildcards: pixel_root(),
        out_dir=lambda wildcards, output: _parent(output.train, 2),
        index_splits=["train"],
        ledger=False,
    script:
        "../scripts/preprocess.py"


rule preprocess:
    """Merge the other splits' shards: their index.json (lists its shard and sidecar files), and the
    preprocessing ledger and summary of every split (the train split read, not written again)."""
    input:
        series=f"{RES}/ingest/series.csv",
        files=f"{PRIV}/files.csv",
        parts=SHARD_PARTS,
        train=f"{RES}/shards/train/index.json",
    output:
        val=f"{RES}/shards/val/index.json",
        test=f"{RES}/shards/test/index.json",
        exclusions=f"{RES}/shards/exclusions.csv",
        summary=f"{RES}/shards/summary.json",
    log:
        f"{RES}/logs/preprocess.log",
    benchmark:
        f"{RES}/benchmarks/preprocess.tsv"
    priority: 20  # the demo's critical path (export -> pretraining): before the features and side jobs
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=16000,
        runtime=120,
    params:
        export_root=lambda wildcards: pixel_root(),
        out_dir=lambda wildcards, output: _parent(output.summary),
        index_splits=[split for split in SPLITS if split != "train"],
        ledger=True,
    script:
        "../scripts/preprocess.py"
