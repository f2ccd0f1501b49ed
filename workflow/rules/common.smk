# Path helpers shared by every rule file. All paths derive from config; nothing is hard-coded.
import os
from pathlib import Path

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
    """Every encoder of the diagnostic comparison against the last one (random weights by default)."""
    encoders = list(config["probes"]["encoders"] or [*config["pretrain"]["train"], "random"])
    return [f"{RES}/tables/diagnosis_{m}_{a}_vs_{encoders[-1]}.csv" for a in encoders[:-1] for m in ("ct", "mri")]


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
