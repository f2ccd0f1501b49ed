rule ingest:
    """Header-only ingestion: series manifest, studies, exclusion ledger, de-identified; splits."""
    input:
        synthetic_export(),
    output:
        series=f"{RES}/ingest/series.csv",
        studies=f"{RES}/ingest/studies.csv",
        exclusions=f"{RES}/ingest/exclusions.csv",
        summary=f"{RES}/ingest/summary.json",
        files=f"{PRIV}/files.csv",
        reports=f"{PRIV}/reports.jsonl",
    log:
        f"{RES}/logs/ingest.log",
    benchmark:
        f"{RES}/benchmarks/ingest.tsv"
    threads: 8
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        dicom_dir=lambda wildcards: export_dir(),
        reports_csv=lambda wildcards: reports_csv(),
        out_dir=f"{RES}/ingest",
        private_dir=PRIV,
    script:
        "../scripts/ingest.py"
