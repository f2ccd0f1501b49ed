rule fig_ed_preprocessing:
    """Extended Data Fig. 1b-c: one CT and one MRI volume before / after preprocessing, masks and tokens."""
    input:
        series=f"{RES}/ingest/series.csv",
        files=f"{PRIV}/files.csv",
        shards=expand(f"{RES}/shards/{{split}}/index.json", split=SPLITS),
    output:
        png=report(
            f"{RES}/figures/ed_preprocessing.png",
            caption="../report/ed_preprocessing.rst",
            category="Dataset",
            subcategory="Preprocessing",
        ),
        pdf=f"{RES}/figures/ed_preprocessing.pdf",
        csv=f"{RES}/figures/ed_preprocessing.csv",
    log:
        f"{RES}/logs/fig_ed_preprocessing.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    params:
        export_root=lambda wildcards: pixel_root(),
        shards_dir=lambda wildcards, input: _parent(input.shards[0], 2),
    script:
        "../scripts/fig_ed_preprocessing.py"


rule fig_ed_dataset:
    """Extended Data Fig. 3: dataset overview (sequences, orientation, sizes, studies, demographics, labels)."""
    input:
        series=f"{RES}/ingest/series.csv",
        studies=f"{RES}/ingest/studies.csv",
        shards=expand(f"{RES}/shards/{{split}}/index.json", split=SPLITS),
        ct=f"{RES}/labels/ct.csv",
        mri=f"{RES}/labels/mri.csv",
    output:
        png=report(
            f"{RES}/figures/ed_dataset.png",
            caption="../report/ed_dataset.rst",
            category="Dataset",
            subcategory="Overview",
        ),
        pdf=f"{RES}/figures/ed_dataset.pdf",
        csv=f"{RES}/figures/ed_dataset.csv",
    log:
        f"{RES}/logs/fig_ed_dataset.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    params:
        shards_dir=lambda wildcards, input: _parent(input.shards[0], 2),
        labels_dir=lambda wildcards, input: _parent(input.ct),
    script:
        "../scripts/fig_ed_dataset.py"
