# DICOM ingestion in K = ingest.chunks jobs: one walk lists the export (private: paths), K jobs read the
# headers of one contiguous piece of the list each, one merge writes what a single job would (byte-identical
# whatever K). The NIfTI route (input.kind: nifti) is one ingest job reading its subjects CSV.


rule ingest_walk:
    """List every file of the DICOM export once (sorted), as K pieces for the header jobs."""
    input:
        synthetic_export(),
    output:
        lists=INGEST_LISTS,
    log:
        f"{RES}/logs/ingest_walk.log",
    benchmark:
        f"{RES}/benchmarks/ingest_walk.tsv"
    priority: 20  # the demo's critical path (export -> pretraining): before the features and side jobs
    conda:
        CONDA_ENV
    # one process; two threads hold both cores for its second, so that the external site's export (one thread, no
    # priority: meant for a core the pretraining leaves free) cannot start beside it and hold up the header reading
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        dicom_dir=lambda wildcards: export_dir(),
    script:
        "../scripts/ingest_walk.py"


rule ingest_headers:
    """Read the kept header fields of one piece of the file list (one of ingest.chunks jobs)."""
    input:
        synthetic_export(),
        files=f"{PRIV}/ingest/lists/{{chunk}}-of-{INGEST_CHUNKS}.jsonl",
    output:
        headers=f"{PRIV}/ingest/headers/{{chunk}}-of-{INGEST_CHUNKS}.pkl",
    log:
        f"{RES}/logs/ingest_headers_{{chunk}}.log",
    benchmark:
        f"{RES}/benchmarks/ingest_headers_{{chunk}}.tsv"
    wildcard_constraints:
        chunk=r"\d+",
    priority: 20  # the demo's critical path (export -> pretraining): before the features and side jobs
    conda:
        CONDA_ENV
    threads: 8
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        dicom_dir=lambda wildcards: export_dir(),
    script:
        "../scripts/ingest_headers.py"


rule ingest:
    """Header-only ingestion: series manifest, studies, exclusion ledger, de-identified; splits. DICOM: the merge
    of the K header chunks (refuses a missing, extra or truncated chunk)."""
    input:
        synthetic_export(),
        chunks=_ingest_header_chunks(),
    output:
        # the NIfTI route also writes the label columns of its subjects CSV
        **({"nifti_labels": f"{RES}/ingest/nifti_labels.csv"} if config["input"]["kind"] == "nifti" else {}),
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
    priority: 20  # the demo's critical path (export -> pretraining): before the features and side jobs
    conda:
        CONDA_ENV
    threads: 2
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
