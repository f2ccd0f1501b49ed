# Frozen feature extraction: one job per encoder ({encoder}: a key of pretrain.models, or "random").
# "random" is the architecture of the first name of pretrain.train with seeded random weights (the usual lower
# bound for frozen-feature probes); a pretrained encoder is its exported student (or teacher, pretrain.export;
# pretrain/{model}/encoder.pt).


rule features:
    """Encode every volume of every split (whole volume, every CT window, foreground tokens) with a frozen
    encoder into results/{run}/features/{encoder}/{split}/; resumes finished chunks after a kill. Each
    index.json lists its split's chunk files (their number follows the data and features.chunk_tokens)."""
    input:
        shards=expand(f"{RES}/shards/{{split}}/index.json", split=FEATURE_SPLITS),
        stats=f"{RES}/shards/train/stats.json",
        encoder=_feature_encoder_pt,
    output:
        index=[f"{RES}/features/{{encoder}}/{split}/index.json" for split in FEATURE_SPLITS],
    log:
        f"{RES}/logs/features_{{encoder}}.log",
    benchmark:
        f"{RES}/benchmarks/features_{{encoder}}.tsv"
    wildcard_constraints:
        encoder=ENCODER_RE,
    conda:
        CONDA_ENV
    threads: 2
    resources:
        gpu=0,
        mem_mb=8000,
        runtime=60,
    params:
        out_dir=lambda wildcards, output: _parent(output.index[0], 2),
        splits=FEATURE_SPLITS,
    script:
        "../scripts/features.py"
