# Frozen feature extraction: one job per encoder, split and input shard ({encoder}: a key of pretrain.models,
# "random", or a key of `encoders`: a public 2D encoder applied slice-wise, one token per slice), then one merge per
# encoder that writes each split's index.json.
# "random" is the architecture of the first name of pretrain.train with seeded random weights (the usual lower
# bound for frozen-feature probes); a pretrained encoder is its exported student (or teacher, pretrain.export;
# pretrain/{model}/encoder.pt). A pretrain model with objective dinov2 (a 2D ViT trained on slices) is applied
# slice-wise like the public 2D encoders, with its `slices` settings (neurovfm.pipeline.features decides).


rule features_shard:
    """Encode every volume of one input shard of one split (whole volume, every CT window, foreground tokens)
    with a frozen encoder into results/{run}/features/{encoder}/{split}/ chunk files; resumes finished chunks
    after a kill. The part file lists the shard's chunks and their fingerprints for the merge."""
    input:
        shards=f"{RES}/shards/{{split}}/index.json",
        stats=f"{RES}/shards/train/stats.json",
        encoder=_feature_encoder_pt,
    output:
        part=f"{RES}/features/{{encoder}}/parts/{{split}}-{{shard}}.json",
    log:
        f"{RES}/logs/features_shard_{{encoder}}_{{split}}-{{shard}}.log",
    benchmark:
        f"{RES}/benchmarks/features_shard_{{encoder}}_{{split}}-{{shard}}.tsv"
    wildcard_constraints:
        encoder=ENCODER_RE,
        split=SPLITS_RE,
        shard=r"\d+",
    priority: 10  # the probes wait on them
    conda:
        CONDA_ENV
    threads: 1  # two one-thread shards side by side: 1.4x the throughput of one on two threads (profiles/armis2: 8)
    resources:
        gpu=0,
        mem_mb=8000,
        runtime=60,
    params:
        out_dir=lambda wildcards, output: _parent(output.part, 2),
    script:
        "../scripts/features_shard.py"


rule features:
    """Merge an encoder's shard jobs: each split's index.json (lists its chunk files; their number follows the
    data, the shards and features.chunk_tokens). Refuses a missing, extra or stale part."""
    input:
        shards=expand(f"{RES}/shards/{{split}}/index.json", split=FEATURE_SPLITS),
        stats=f"{RES}/shards/train/stats.json",
        parts=_feature_parts,
    output:
        index=[f"{RES}/features/{{encoder}}/{split}/index.json" for split in FEATURE_SPLITS],
    log:
        f"{RES}/logs/features_{{encoder}}.log",
    benchmark:
        f"{RES}/benchmarks/features_{{encoder}}.tsv"
    wildcard_constraints:
        encoder=ENCODER_RE,
    priority: 10  # the probes wait on it, as on the shards (at 0 it waited behind the comparison pretrainings)
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        out_dir=lambda wildcards, output: _parent(output.index[0], 2),
        splits=FEATURE_SPLITS,
    script:
        "../scripts/features.py"
