# One job per output shard (store.shards: split -> number of shards), then one merge that writes the indexes,
# train statistics and ledger (byte-identical to a single job; refuses a missing, extra or stale shard).


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
    priority: 20  # the demo's critical path (export -> pretraining): before the features and side jobs
    conda:
        CONDA_ENV
    threads: 8
    resources:
        mem_mb=16000,
        runtime=720,
    params:
        export_root=lambda wildcards: pixel_root(),
        out_dir=lambda wildcards, output: _parent(output.part, 2),
    script:
        "../scripts/preprocess_shard.py"


rule preprocess:
    """Merge the shards: every split's index.json (lists its shard and sidecar files), train statistics,
    the preprocessing ledger and summary."""
    input:
        series=f"{RES}/ingest/series.csv",
        files=f"{PRIV}/files.csv",
        parts=SHARD_PARTS,
    output:
        train=f"{RES}/shards/train/index.json",
        val=f"{RES}/shards/val/index.json",
        test=f"{RES}/shards/test/index.json",
        stats=f"{RES}/shards/train/stats.json",
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
    script:
        "../scripts/preprocess.py"
