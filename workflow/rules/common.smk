# Path helpers shared by all the .smk files. All paths derive from config; nothing is hard-coded.
import os
import re
from pathlib import Path

from neurovfm.pipeline import analysis_encoders, comparison_pairs, laterality_encoders
from neurovfm.pipeline import probe_encoders as pipeline_probe_encoders

RUN = config["run"]
RES = f"{config['paths']['results']}/{RUN}"
PRIV = f"{os.path.expandvars(config['paths']['private'])}/{RUN}"
SYNTHETIC = config["input"]["kind"] == "dicom" and config["input"]["dicom_dir"] is None

_unknown = sorted(set(config["pretrain"]["train"]) - set(config["pretrain"]["models"]))
if _unknown:
    raise ValueError(
        f"pretrain.train names {_unknown}, which are not keys of pretrain.models "
        f"({sorted(config['pretrain']['models'])})"
    )


def _expanded(path):
    return os.path.expandvars(path) if path else None


def export_dir():
    """The DICOM tree ingest reads: the synthetic export, the user's PACS export, or None on the NIfTI route
    (ingest then reads input.nifti_dir and input.nifti_csv)."""
    if SYNTHETIC:
        return f"{RES}/pacs_export/dicom"
    if config["input"]["kind"] == "nifti":
        return None
    return _expanded(config["input"]["dicom_dir"])


def pixel_root():
    """Folder that the paths of private/{run}/files.csv are relative to."""
    if config["input"]["kind"] == "nifti":
        return _expanded(config["input"]["nifti_dir"])
    return export_dir()


def reports_csv():
    if SYNTHETIC:
        return f"{RES}/pacs_export/reports.csv"
    return _expanded(config["input"]["reports_csv"])


def synthetic_export():
    """Input of ingest: the synth rule's output when synthetic, nothing tracked otherwise (an
    external export is an immutable snapshot; its existence is checked when the job runs)."""
    return [f"{RES}/pacs_export"] if SYNTHETIC else []


def _comparison_tables():
    """The paired comparisons of the diagnostic encoders (neurovfm.pipeline.comparison_pairs): each against the
    last one (random weights by default), and each against the first (the main model, Vol-JEPA in the demo)."""
    return [f"{RES}/tables/diagnosis_{m}_{a}_vs_{b}.csv" for a, b in comparison_pairs(config) for m in MODALITIES]


def all_targets():
    targets = [
        f"{RES}/ingest/series.csv",
        f"{RES}/labels/ct.csv",
        f"{RES}/labels/mri.csv",
        f"{RES}/labels/findings.jsonl",
        *[f"{RES}/shards/{split}/index.json" for split in ("train", "val", "test")],
        f"{RES}/figures/ed_preprocessing.png",
        f"{RES}/figures/ed_dataset.png",
        *[f"{RES}/pretrain/{model}/encoder.pt" for model in config["pretrain"]["train"]],
        f"{RES}/figures/ed_masking.png",
        *[
            f"{RES}/features/{encoder}/{split}/index.json"
            for encoder in [*config["pretrain"]["train"], "random"]
            for split in ("train", "val", "test")
        ],
        *[f"{RES}/figures/{fig}.png" for fig in ("fig2a", "fig2c", "fig3d")],
        *_comparison_tables(),
        f"{RES}/figures/ed_encoder_comparison.png",
    ]
    if SYNTHETIC:
        targets.append(f"{RES}/labels/extractor_eval.csv")
        targets += [f"{RES}/figures/{fig}.png" for fig in ("fig3a", "fig3b", "ed_kmeans")]
    # external datasets: those with their own NIfTI folder, and the synthetic site only in synthetic runs
    targets += [
        f"{RES}/tables/external_{d}.csv"
        for d, v in config["analysis"]["external"]["datasets"].items()
        if SYNTHETIC or (v["nifti_dir"] is not None and v["csv"] is not None)
    ]
    targets += [f"{RES}/figures/{name}.png" for name in ("fig4b", "fig4c", "fig4d", "ed_reportgen_scaling")]
    targets += [f"{RES}/figures/{name}.png" for name in ("fig2e", "fig3c", "ed_subgroups", "ed_laterality")]
    return targets


# ---------------------------------------------------------------------------------------------------------------
# Names and input functions of the .smk files, kept here (snakemake --lint wants functions apart from rules).
# ---------------------------------------------------------------------------------------------------------------
CONDA_ENV = "../envs/neurovfm.yaml"  # relative to workflow/rules/; one stack: every script imports neurovfm
SPLITS = ("train", "val", "test")
MODALITIES = ("ct", "mri")
FEATURE_SPLITS = SPLITS


def _names_regex(names):
    """A wildcard constraint that matches exactly these names (model names may hold _ - and .)."""
    return "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True))


PUBLIC_ENCODERS = dict(config.get("encoders") or {})  # public 2D encoders applied slice-wise (named targets only)
_clash = sorted(set(PUBLIC_ENCODERS) & set(config["pretrain"]["models"]))
if _clash:
    raise ValueError(f"encoders {_clash} are also pretrain.models names: give the public encoders other names")
ENCODER_NAMES = ["random", *config["pretrain"]["models"], *PUBLIC_ENCODERS]
MODEL_RE = _names_regex(config["pretrain"]["models"])


def _main_model(wildcards):
    """Whether the {model} being pretrained is one of pretrain.train (the DAG's critical path), not a comparison
    encoder of probes.encoders or a scaling-grid copy."""
    return wildcards.model in config["pretrain"]["train"]


ENCODER_RE = _names_regex(ENCODER_NAMES)


def probe_encoders():
    return pipeline_probe_encoders(config)  # the package's list, as the scripts see it


SPLITS_RE = _names_regex(SPLITS)
# ingest: K header-reading jobs (ingest.chunks); preprocess and features: one job per shard of store.shards
INGEST_CHUNKS = int(config["ingest"]["chunks"])
INGEST_LISTS = [f"{PRIV}/ingest/lists/{k}-of-{INGEST_CHUNKS}.jsonl" for k in range(INGEST_CHUNKS)]
SHARDS = [(split, s) for split in SPLITS for s in range(int(config["store"]["shards"][split]))]
SHARD_PARTS = [f"{RES}/shards/parts/{split}-{s}.json" for split, s in SHARDS]
TRAIN_SHARD_PARTS = [f"{RES}/shards/parts/{split}-{s}.json" for split, s in SHARDS if split == "train"]


def _ingest_header_chunks():
    """The header chunks the DICOM ingest merges (none on the NIfTI route)."""
    if config["input"]["kind"] == "nifti":
        return []
    return [f"{PRIV}/ingest/headers/{k}-of-{INGEST_CHUNKS}.pkl" for k in range(INGEST_CHUNKS)]


def _feature_parts(wildcards):
    return [
        f"{RES}/features/{wildcards.encoder}/parts/{split}-{s}.json" for split, s in SHARDS if split in FEATURE_SPLITS
    ]


def _feature_encoder_pt(wildcards):
    """The encoder's weights: encoder.pt of a pretrain model, a public encoder's local folder (none with random
    weights), nothing for random."""
    if wildcards.encoder in PUBLIC_ENCODERS:
        path = PUBLIC_ENCODERS[wildcards.encoder]["path"]
        if path and "$" in _expanded(path):
            raise ValueError(
                f"encoders.{wildcards.encoder}.path {path!r} names an environment variable that is not set: export "
                "it (the folder of the downloaded weights), or set path: null for the random-weight floor"
            )
        return [_expanded(path)] if path else []
    if wildcards.encoder == "random":
        return []
    return [f"{RES}/pretrain/{wildcards.encoder}/encoder.pt"]


def _probe_inputs(name, encoders):
    return expand(f"{RES}/probes/{{encoder}}/{{modality}}/{name}", encoder=encoders, modality=MODALITIES)


def _encoder_pts(encoders):
    return [f"{RES}/pretrain/{e}/encoder.pt" for e in encoders if e != "random"]


def _parent(path, levels=1):
    """The folder ``levels`` above ``path`` (scripts that read a tree get it from a declared input)."""
    return str(Path(path).parents[levels - 1])


ANATOMY = config["analysis"]["anatomy"]
ANATOMY_ENCODERS = analysis_encoders(config, "anatomy")  # the package's defaults, as the scripts see them
EXTERNAL = config["analysis"]["external"]
EXTERNAL_DATASETS = list(EXTERNAL["datasets"])
EXTERNAL_SYNTH = EXTERNAL["synthetic"]["name"]


def _external_source(wildcards):
    d = EXTERNAL["datasets"][wildcards.dataset]
    return [f"{RES}/external/{wildcards.dataset}/source"] if d["nifti_dir"] is None or d["csv"] is None else []


def _external_transfer(wildcards):
    return [
        f"{RES}/external/{t['dataset']}/benchmark" for t in EXTERNAL["datasets"][wildcards.dataset]["transfer_from"]
    ]


RG_ENCODERS = config["reportgen"]["encoders"] or config["pretrain"]["train"][:1]
RG_SIZES = [int(s) for s in config["reportgen"]["sizes"]]
RG_SPLIT = config["reportgen"]["generation"]["split"]


RG_BASELINES = {
    "prior_only": "prior-only",
    "retrieval": "retrieval ({e})",
    "shuffled_image": "shuffled-image ({e}, n{s})",
}


def rg_baseline_files():
    """Baseline name (neurovfm.reportgen.run.baseline_names) -> its answers, beside the main model (the first
    encoder at the largest size)."""
    e, s = RG_ENCODERS[0], max(RG_SIZES)
    return {n.format(e=e, s=s): f"{RES}/reportgen/{e}/n{s}/baselines/{k}.jsonl" for k, n in RG_BASELINES.items()}


def rg_generations(wildcards=None):
    """Model name ({encoder}/n{size}, or a baseline) -> its generations.jsonl."""
    models = {f"{e}/n{s}": f"{RES}/reportgen/{e}/n{s}/generations.jsonl" for e in RG_ENCODERS for s in RG_SIZES}
    return {**models, **rg_baseline_files()}


def rg_generation_inputs(wildcards):
    """The same files as named inputs (gen_{encoder}_n{size}, then gen_baseline_{k})."""
    models = {f"gen_{e}_n{s}": f"{RES}/reportgen/{e}/n{s}/generations.jsonl" for e in RG_ENCODERS for s in RG_SIZES}
    files = list(rg_baseline_files().values())
    return {**models, **{f"gen_baseline_{k}": f for k, f in zip(RG_BASELINES, files)}}


def rg_truth_dir(wildcards, input):
    return f"{input.export[0]}/truth" if SYNTHETIC else None
