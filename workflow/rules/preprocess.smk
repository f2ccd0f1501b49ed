rule preprocess:
    """Resample (1 x 1 x 4 mm), window, quantise and mask every included series into memory-mapped shards."""
    input:
        series=f"{RES}/ingest/series.csv",
        files=f"{PRIV}/files.csv",
    output:
        # each index.json lists its split's shard and sidecar files (their number follows store.shards)
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
    conda:
        CONDA_ENV
    threads: 8
    resources:
        mem_mb=16000,
        runtime=720,
    params:
        export_root=lambda wildcards: pixel_root(),
        out_dir=lambda wildcards, output: _parent(output.summary),
    script:
        "../scripts/preprocess.py"
