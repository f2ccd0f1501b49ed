# Diagnostic analyses on the probes: label efficiency (Fig. 2e), cross-modal transfer (Fig. 3c), subgroups and
# laterality (Extended Data). Tables under results/{run}/tables/, figures under results/{run}/figures/.


rule label_efficiency:
    """Platt-calibrated test F1 per class vs training positives; OLS (HC3), ANCOVA, label-equivalence folds."""
    input:
        predictions=_probe_inputs("predictions.csv", probe_encoders()),
        labels=expand(f"{RES}/labels/{{modality}}.csv", modality=MODALITIES),
    output:
        table=f"{RES}/tables/label_efficiency.csv",
        models=f"{RES}/tables/label_efficiency_models.csv",
    log:
        f"{RES}/logs/label_efficiency.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        probes_dir=lambda wildcards, input: _parent(input.predictions[0], 3),
        labels_dir=lambda wildcards, input: _parent(input.labels[0]),
    script:
        "../scripts/label_efficiency.py"


rule cross_modal:
    """Each CT probe scored zero-shot on the MRI test studies (and back) vs the native probe."""
    input:
        probes=_probe_inputs("probe.pt", probe_encoders()),
        predictions=_probe_inputs("predictions.csv", probe_encoders()),
        features=expand(f"{RES}/features/{{encoder}}/test/index.json", encoder=probe_encoders()),
        labels=expand(f"{RES}/labels/{{modality}}.csv", modality=MODALITIES),
    output:
        f"{RES}/tables/cross_modal.csv",
    log:
        f"{RES}/logs/cross_modal.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        probes_dir=lambda wildcards, input: _parent(input.predictions[0], 3),
        features_dir=lambda wildcards, input: _parent(input.features[0], 3),
        labels_dir=lambda wildcards, input: _parent(input.labels[0]),
    script:
        "../scripts/cross_modal.py"


rule subgroups:
    """AUROC differential of each subgroup against the full test set (paired study-level bootstrap)."""
    input:
        predictions=_probe_inputs("predictions.csv", probe_encoders()),
        studies=f"{RES}/ingest/studies.csv",
    output:
        table=f"{RES}/tables/subgroups.csv",
        means=f"{RES}/tables/subgroups_means.csv",
    log:
        f"{RES}/logs/subgroups.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        probes_dir=lambda wildcards, input: _parent(input.predictions[0], 3),
    script:
        "../scripts/subgroups.py"


rule laterality:
    """Left-right flip of correctly detected lateralised test findings, re-encoded and re-scored."""
    input:
        probes=_probe_inputs("probe.pt", laterality_encoders(config)),
        predictions=_probe_inputs("predictions.csv", laterality_encoders(config)),
        thresholds=_probe_inputs("thresholds.csv", laterality_encoders(config)),
        features=expand(
            f"{RES}/features/{{encoder}}/{{split}}/index.json",
            encoder=laterality_encoders(config),
            split=("train", "val", "test"),
        ),
        encoders=[f"{RES}/pretrain/{e}/encoder.pt" for e in laterality_encoders(config) if e != "random"],
        labels=expand(f"{RES}/labels/{{modality}}.csv", modality=MODALITIES),
        findings=f"{RES}/labels/findings.jsonl",
        shards=f"{RES}/shards/test/index.json",
        stats=f"{RES}/shards/train/stats.json",
    output:
        table=f"{RES}/tables/laterality.csv",
        studies=f"{RES}/tables/laterality_studies.csv",
    log:
        f"{RES}/logs/laterality.log",
    priority: 10  # with the probes: the longest job after them (at two threads it waited for both cores, last)
    conda:
        CONDA_ENV
    threads: 1  # re-encodes a few volumes, as the feature shards do, on one thread
    resources:
        gpu=0,
        mem_mb=8000,
        runtime=60,
    params:
        probes_dir=lambda wildcards, input: _parent(input.predictions[0], 3),
        features_dir=lambda wildcards, input: _parent(input.features[0], 3),
        labels_dir=lambda wildcards, input: _parent(input.labels[0]),
        # the pretrained encoders are declared inputs; with only `random` tested there is none to read
        pretrain_dir=lambda wildcards, input: _parent(input.encoders[0], 2) if input.encoders else None,
    script:
        "../scripts/laterality.py"


_ANALYSIS_FIGURE_TABLES = {
    "fig2e": {"table": f"{RES}/tables/label_efficiency.csv", "models": f"{RES}/tables/label_efficiency_models.csv"},
    "fig3c": {"table": f"{RES}/tables/cross_modal.csv"},
    "ed_subgroups": {"table": f"{RES}/tables/subgroups.csv"},
    "ed_laterality": {"table": f"{RES}/tables/laterality.csv", "studies": f"{RES}/tables/laterality_studies.csv"},
}


rule fig_diagnostic_analysis:
    """Fig. 2e, Fig. 3c, the subgroup and the laterality figures, each from its tables."""
    input:
        unpack(lambda wildcards: _ANALYSIS_FIGURE_TABLES[wildcards.fig]),
    output:
        png=report(
            f"{RES}/figures/{{fig}}.png",
            caption="../report/fig_diagnostic_analysis.rst",
            category="Analyses",
            subcategory="Diagnostic analyses",
            labels={"figure": "{fig}"},
        ),
        pdf=f"{RES}/figures/{{fig}}.pdf",
        csv=f"{RES}/figures/{{fig}}.csv",
    log:
        f"{RES}/logs/{{fig}}.log",
    wildcard_constraints:
        fig="|".join(_ANALYSIS_FIGURE_TABLES),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/fig_diagnostic_analysis.py"
