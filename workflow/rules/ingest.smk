rule ingest:
    """Header-only ingestion: series manifest, studies, exclusion ledger, de-identified; splits."""
    input:
        synthetic_export(),
    output:
        **({"nifti_labels": f"{RES}/ingest/nifti_labels.csv"} if config["input"]["kind"] == "nifti" else {}),
        series=f"{RES}/ingest/series.csv",
        studies=f"{RES}/ingest/studies.csv",
        exclusions=f"{RES}/ingest/exclusions.csv",
        summary=f"{RES}/ingest/summary.json",
        files=f"{PRIV}/files.csv",
        reports=f"{PRIV}/reports.jsonl",
        # the NIfTI route also writes the label columns of its subjects CSV
    log:
        f"{RES}/logs/ingest.log",
    benchmark:
        f"{RES}/benchmarks/ingest.tsv"
    conda:
        CONDA_ENV
    threads: 8
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        dicom_dir=lambda wildcards: export_dir(),
        reports_csv=lambda wildcards: reports_csv(),
        out_dir=lambda wildcards, output: _parent(output.series),
        private_dir=lambda wildcards, output: _parent(output.files),
    script:
        "../scripts/ingest.py"
