# Fig. 2b, the scaling grid: the models of `scaling:` (neurovfm.scaling_grid adds them to pretrain.models, so each is
# an ordinary {model}: pretrain, features, probes and diagnosis tables as any other), then one table and the figure.
# Not part of `all` (its pretraining runs cost the demo's whole budget again): `snakemake ... scaling`.
from neurovfm.scaling_grid import table_inputs

SCALING_INPUTS = table_inputs(config, RES)


rule scaling:
    """Fig. 2b and its table: pretrain, probe and tabulate every model of the scaling grid (a target, not in `all`)."""
    input:
        f"{RES}/figures/fig2b.png",
        f"{RES}/tables/scaling.csv",


rule scaling_table:
    """Mean test AUROC per grid model and modality, the least-squares line on log10(data fraction) per size with a
    paired study-level bootstrap interval of its slope, and multimodal - unimodal (paired comparison tables)."""
    input:
        categories=SCALING_INPUTS["categories"],
        predictions=SCALING_INPUTS["predictions"],
        comparisons=SCALING_INPUTS["comparisons"],
    output:
        f"{RES}/tables/scaling.csv",
    log:
        f"{RES}/logs/scaling_table.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        results_dir=lambda wildcards, output: _parent(output[0], 2),  # results/{run}: the package maps the inputs
    script:
        "../scripts/scaling_table.py"


rule fig2b:
    """Fig. 2b: mean AUROC against data fraction (one line per size) and model size, multimodal vs unimodal."""
    input:
        f"{RES}/tables/scaling.csv",
    output:
        png=report(
            f"{RES}/figures/fig2b.png",
            caption="../report/fig2b.rst",
            category="Diagnosis",
            subcategory="Scaling",
        ),
        pdf=f"{RES}/figures/fig2b.pdf",
        csv=f"{RES}/figures/fig2b.csv",
    log:
        f"{RES}/logs/fig2b.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/fig2b.py"
