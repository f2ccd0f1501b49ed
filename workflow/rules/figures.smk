rule fig_ed_preprocessing:
    """Extended Data Fig. 1b-c: one CT and one MRI volume before / after preprocessing, masks and tokens."""
    input:
        series=f"{RES}/ingest/series.csv",
        files=f"{PRIV}/files.csv",
        shards=expand(f"{RES}/shards/{{split}}/index.json", split=["train", "val", "test"]),
    output:
        png=f"{RES}/figures/ed_preprocessing.png",
        pdf=f"{RES}/figures/ed_preprocessing.pdf",
        csv=f"{RES}/figures/ed_preprocessing.csv",
    log:
        f"{RES}/logs/fig_ed_preprocessing.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    params:
        export_root=lambda wildcards: pixel_root(),
        shards_dir=f"{RES}/shards",
    script:
        "../scripts/fig_ed_preprocessing.py"


rule fig_ed_dataset:
    """Extended Data Fig. 3: dataset overview (sequences, orientation, sizes, studies, demographics, labels)."""
    input:
        series=f"{RES}/ingest/series.csv",
        studies=f"{RES}/ingest/studies.csv",
        shards=expand(f"{RES}/shards/{{split}}/index.json", split=["train", "val", "test"]),
        ct=f"{RES}/labels/ct.csv",
        mri=f"{RES}/labels/mri.csv",
    output:
        png=f"{RES}/figures/ed_dataset.png",
        pdf=f"{RES}/figures/ed_dataset.pdf",
        csv=f"{RES}/figures/ed_dataset.csv",
    log:
        f"{RES}/logs/fig_ed_dataset.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    params:
        shards_dir=f"{RES}/shards",
        labels_dir=f"{RES}/labels",
    script:
        "../scripts/fig_ed_dataset.py"
