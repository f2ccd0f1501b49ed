# Study-level attentive probes on frozen features, test-set diagnostic tables, Fig. 2a / 2c / 3d.
# {encoder}, {a}, {b}: a key of pretrain.models, "random" or a key of `encoders` (exact names: they may hold _ - and .);
# {modality}: ct | mri.
PROBE_FILES = (
    "probe.pt",
    "predictions.csv",
    "thresholds.csv",
    "selection.csv",
    "history.csv",
    "unmatched.csv",
    "attention.npz",
)


wildcard_constraints:
    modality="ct|mri",


rule probe:
    """Fit the probe on train, choose epoch / hyperparameters / thresholds on val, then predict val and test."""
    input:
        features=expand(f"{RES}/features/{{{{encoder}}}}/{{split}}/index.json", split=SPLITS),
        labels=f"{RES}/labels/{{modality}}.csv",
        findings=f"{RES}/labels/findings.jsonl",
    output:
        [f"{RES}/probes/{{encoder}}/{{modality}}/{name}" for name in PROBE_FILES],
    log:
        f"{RES}/logs/probe_{{encoder}}_{{modality}}.log",
    benchmark:
        f"{RES}/benchmarks/probe_{{encoder}}_{{modality}}.tsv"
    wildcard_constraints:
        encoder=ENCODER_RE,
    priority: 10  # the longest jobs of the end of the DAG: started before the short ones that can wait
    conda:
        CONDA_ENV
    threads: 1  # small matrices: one thread per probe is faster than two, and two probes run side by side
    resources:
        gpu=0,
        mem_mb=8000,
        runtime=120,
    params:
        feature_dir=lambda wildcards, input: _parent(input.features[0], 2),
        out_dir=lambda wildcards, output: _parent(output[0]),
    script:
        "../scripts/probe.py"


rule diagnosis_table:
    """Per-class test metrics with bootstrap CIs, and category means."""
    input:
        predictions=f"{RES}/probes/{{encoder}}/{{modality}}/predictions.csv",
        thresholds=f"{RES}/probes/{{encoder}}/{{modality}}/thresholds.csv",
    output:
        table=f"{RES}/tables/diagnosis_{{modality}}_{{encoder}}.csv",
        categories=f"{RES}/tables/diagnosis_{{modality}}_{{encoder}}_categories.csv",
    log:
        f"{RES}/logs/diagnosis_table_{{modality}}_{{encoder}}.log",
    wildcard_constraints:
        encoder=ENCODER_RE,
    conda:
        CONDA_ENV
    threads: 1  # a few seconds of bootstrap; a two-thread job waits for two free cores at once
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/diagnosis_table.py"


rule encoder_comparison:
    """Paired study-level bootstrap of the AUROC difference between two encoders (same test studies)."""
    input:
        a=f"{RES}/probes/{{a}}/{{modality}}/predictions.csv",
        b=f"{RES}/probes/{{b}}/{{modality}}/predictions.csv",
    output:
        report(
            f"{RES}/tables/diagnosis_{{modality}}_{{a}}_vs_{{b}}.csv",
            caption="../report/encoder_comparison.rst",
            category="Diagnosis",
            subcategory="Encoder comparison",
            labels={"modality": "{modality}", "encoder": "{a}", "baseline": "{b}"},
        ),
    log:
        f"{RES}/logs/encoder_comparison_{{modality}}_{{a}}_vs_{{b}}.log",
    wildcard_constraints:
        a=ENCODER_RE,
        b=ENCODER_RE,
    conda:
        CONDA_ENV
    threads: 1  # a few seconds of bootstrap; a two-thread job waits for two free cores at once
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/encoder_comparison.py"


rule fig_diagnosis:
    """Fig. 2a (mean AUROC per encoder) and Fig. 2c (by diagnostic category)."""
    input:
        expand(
            f"{RES}/tables/diagnosis_{{modality}}_{{encoder}}{{suffix}}.csv",
            modality=MODALITIES,
            encoder=probe_encoders(),
            suffix=("", "_categories"),
        ),
    output:
        png=report(
            f"{RES}/figures/{{fig}}.png",
            caption="../report/fig_diagnosis.rst",
            category="Diagnosis",
            subcategory="Diagnostic performance",
            labels={"figure": "{fig}"},
        ),
        pdf=f"{RES}/figures/{{fig}}.pdf",
        csv=f"{RES}/figures/{{fig}}.csv",
    log:
        f"{RES}/logs/{{fig}}.log",
    wildcard_constraints:
        fig="fig2a|fig2c",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        tables_dir=lambda wildcards, input: _parent(input[0]),
    script:
        "../scripts/fig_diagnosis.py"


rule fig_encoder_comparison:
    """The paired encoder comparisons of Fig. 2a drawn: each encoder minus random weights, each baseline minus the
    main model."""
    input:
        _comparison_tables(),
    output:
        png=report(
            f"{RES}/figures/ed_encoder_comparison.png",
            caption="../report/ed_encoder_comparison.rst",
            category="Diagnosis",
            subcategory="Encoder comparison",
        ),
        pdf=f"{RES}/figures/ed_encoder_comparison.pdf",
        csv=f"{RES}/figures/ed_encoder_comparison.csv",
    log:
        f"{RES}/logs/ed_encoder_comparison.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        tables_dir=lambda wildcards, input: _parent(input[0]),
    script:
        "../scripts/fig_encoder_comparison.py"


rule fig3d:
    """Fig. 3d: class attention over a lateralised test finding (first pretrained encoder's probes)."""
    input:
        probes=expand(
            f"{RES}/probes/{{encoder}}/{{modality}}/{{name}}",
            encoder=probe_encoders()[0],
            modality=MODALITIES,
            name=("attention.npz", "predictions.csv"),
        ),
        findings=f"{RES}/labels/findings.jsonl",
        shards=f"{RES}/shards/{config['probes']['attention']['split']}/index.json",
    output:
        png=report(
            f"{RES}/figures/fig3d.png",
            caption="../report/fig3d.rst",
            category="Diagnosis",
            subcategory="Attention",
        ),
        pdf=f"{RES}/figures/fig3d.pdf",
        csv=f"{RES}/figures/fig3d.csv",
    log:
        f"{RES}/logs/fig3d.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        encoder=probe_encoders()[0],
        probes_dir=lambda wildcards, input: _parent(input.probes[0], 2),
    script:
        "../scripts/fig3d.py"
