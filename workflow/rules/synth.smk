rule synth:
    """The embedded health system: a synthetic PACS export, reports and ground truth."""
    output:
        # a variable set of DICOM files, reports and per-study truth (manifest.json lists them)
        directory(f"{RES}/pacs_export"),
    log:
        f"{RES}/logs/synth.log",
    benchmark:
        f"{RES}/benchmarks/synth.tsv"
    priority: 20  # the demo's critical path (export -> pretraining): before the external site's export
    conda:
        CONDA_ENV
    threads: 8
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        # a changed generator makes a new export (rerun trigger params), see neurovfm/synth/fingerprint.py
        generator=generator_fingerprint(),
    script:
        "../scripts/synth.py"
