# The paper's analyses (neurovfm/analysis): the demo's external dataset; the analysis rules (label efficiency,
# cross-modal transfer, subgroups, laterality, anatomy, external benchmarks) are in analyses_*.smk.


rule synth_external:
    """A second synthetic site as a public-benchmark-style dataset: NIfTI volumes + subjects.csv."""
    output:
        # a variable set of NIfTI volumes (one per scan) and subjects.csv
        directory(f"{RES}/external/{{dataset}}/source"),
    log:
        f"{RES}/logs/synth_external_{{dataset}}.log",
    wildcard_constraints:
        dataset=re.escape(EXTERNAL_SYNTH),
    conda:
        CONDA_ENV
    # no priority and one process (the files do not depend on the count): nothing of the critical path waits on it
    # (only the external benchmark, after the main model's features), so it runs on a core that the main
    # pretraining leaves free rather than ahead of the export
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/synth_external.py"
