rule labels:
    """Diagnosis labels (82 CT / 74 MRI) and structured key findings from the reports."""
    input:
        reports=f"{PRIV}/reports.jsonl",
        studies=f"{RES}/ingest/studies.csv",
    output:
        ct=f"{RES}/labels/ct.csv",
        mri=f"{RES}/labels/mri.csv",
        findings=f"{RES}/labels/findings.jsonl",
    log:
        f"{RES}/logs/labels.log",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        out_dir=f"{RES}/labels",
        private_dir=PRIV,
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
        f"{RES}/labels/extractor_eval.csv",
    log:
        f"{RES}/logs/extractor_eval.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/extractor_eval.py"
