# The trained run packed as one folder (neurovfm.bundle): encoder, probes with validation thresholds and
# calibration, report generator, preprocessing statistics and configuration, model card, sha256 manifest.
BUNDLE_ENCODER = config["bundle"]["encoder"] or config["pretrain"]["train"][0]
BUNDLE_SIZE = config["bundle"]["reportgen_size"] or max(int(s) for s in config["reportgen"]["sizes"])
BUNDLE = f"{RES}/bundle"


rule bundle:
    """results/{run}/bundle/: everything `neurovfm predict` needs, checked by its manifest when loaded."""
    input:
        encoder=f"{RES}/pretrain/{BUNDLE_ENCODER}/encoder.pt",
        stats=f"{RES}/shards/train/stats.json",
        probes=expand(
            f"{RES}/probes/{BUNDLE_ENCODER}/{{modality}}/{{name}}",
            modality=("ct", "mri"),
            name=("probe.pt", "thresholds.csv", "predictions.csv"),
        ),
        connector=f"{RES}/reportgen/{BUNDLE_ENCODER}/n{BUNDLE_SIZE}/connector.pt",
        lm=f"{RES}/reportgen/{BUNDLE_ENCODER}/n{BUNDLE_SIZE}/lm",
        tables=expand(f"{RES}/tables/diagnosis_{{modality}}_{BUNDLE_ENCODER}.csv", modality=("ct", "mri")),
        studies=f"{RES}/ingest/studies.csv",
        labels=expand(f"{RES}/labels/{{modality}}.csv", modality=("ct", "mri")),
    output:
        card=f"{BUNDLE}/MODEL_CARD.md",
        card_json=f"{BUNDLE}/model_card.json",
        manifest=f"{BUNDLE}/manifest.json",
        config=f"{BUNDLE}/config.yaml",
        encoder=f"{BUNDLE}/encoder/encoder.pt",
        stats=f"{BUNDLE}/preprocess/stats.json",
        probes=expand(
            f"{BUNDLE}/probes/{{modality}}/{{name}}",
            modality=("ct", "mri"),
            name=("probe.pt", "thresholds.csv", "calibration.csv"),
        ),
        connector=f"{BUNDLE}/reportgen/connector.pt",
        # the report generator's LM as a Hugging Face folder (weights, config, tokenizer: its own file set)
        lm=directory(f"{BUNDLE}/reportgen/lm"),
    log:
        f"{RES}/logs/bundle.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        out_dir=lambda wildcards, output: _parent(output.manifest),
        probes_dir=lambda wildcards, input: _parent(input.probes[0], 2),
        reportgen_dir=lambda wildcards, input: _parent(input.connector),
    script:
        "../scripts/bundle.py"
