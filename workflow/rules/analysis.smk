# The paper's analyses (neurovfm/analysis). Phase 1: the demo's external dataset; the analysis rules
# (label efficiency, cross-modal transfer, subgroups, laterality, anatomy, external benchmarks) join here.
EXTERNAL_SYNTH = config["analysis"]["external"]["synthetic"]["name"]


rule synth_external:
    """A second synthetic site as a public-benchmark-style dataset: NIfTI volumes + subjects.csv."""
    output:
        directory(f"{RES}/external/{{dataset}}/source"),
    log:
        f"{RES}/logs/synth_external_{{dataset}}.log",
    wildcard_constraints:
        dataset=EXTERNAL_SYNTH,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/synth_external.py"
