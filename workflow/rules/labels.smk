rule labels:
    """Diagnosis labels (82 CT / 74 MRI) and structured key findings from the reports."""
    input:
        reports=f"{PRIV}/reports.jsonl",
        studies=f"{RES}/ingest/studies.csv",
    output:
        ct=f"{RES}/labels/ct.csv",
        mri=f"{RES}/labels/mri.csv",
        findings=f"{RES}/labels/findings.jsonl",
        errors=f"{RES}/labels/extract_errors.csv",
    log:
        f"{RES}/logs/labels.log",
    priority: 10  # every probe and report-generation job waits on it, as on the features
    conda:
        CONDA_ENV
    threads: 1  # one process; with two threads it waited for two free cores at once, which a DAG of one-thread jobs
    # seldom leaves (the timed run of 0f80d01 started it 21 min late, and every probe with it)
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        out_dir=lambda wildcards, output: _parent(output.ct),
        private_dir=lambda wildcards, input: _parent(input.reports),
    script:
        "../scripts/labels.py"


rule extractor_eval:
    """Score the report extractor against the embedded health system's ground truth."""
    input:
        export=f"{RES}/pacs_export",
        ct=f"{RES}/labels/ct.csv",
        mri=f"{RES}/labels/mri.csv",
        studies=f"{RES}/ingest/studies.csv",
    output:
        report(
            f"{RES}/labels/extractor_eval.csv",
            caption="../report/extractor_eval.rst",
            category="Dataset",
            subcategory="Labels",
        ),
    log:
        f"{RES}/logs/extractor_eval.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/extractor_eval.py"
