"""What the user names on the command line: DICOM folders (one study or many, any nesting and file names) and
NIfTI files. Each becomes a private ingest input inside the work folder; nothing here is written under the
output folder."""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

from neurovfm.utils.failure import Failed

NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass(frozen=True)
class Source:
    kind: str  # dicom | nifti
    path: Path  # as given (may carry PHI in its name: never written to the outputs)


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def classify(paths) -> list[Source]:
    """One :class:`Source` per input; :class:`Failed` (``bad_input_path``) for a path that is neither."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out.append(Source("dicom", p))
        elif p.is_file() and is_nifti(p):
            out.append(Source("nifti", p))
        else:
            raise Failed(
                "bad_input_path",
                "an input is neither a folder of DICOM files nor a NIfTI file",
                private=f"input {p} is neither a folder nor a .nii/.nii.gz file",
            )
    return out


def stage_nifti(src: Source, work: Path, modality: str | None, sequence: str | None) -> tuple[Path, Path]:
    """Copy the NIfTI file under a neutral name into ``work/nifti/`` and write the one-row CSV the NIfTI ingest
    reads; returns (folder, CSV)."""
    if modality is None:
        raise Failed("bad_input_path", "a NIfTI input needs --modality CT or MR (a NIfTI header does not say)")
    folder = work / "nifti"
    folder.mkdir(parents=True, exist_ok=True)
    name = "volume.nii.gz" if src.path.name.lower().endswith(".gz") else "volume.nii"
    shutil.copyfile(src.path, folder / name)
    from neurovfm.bundle.manifest import sha256_file

    study_key = "nifti:" + sha256_file(folder / name)  # the content names the study (keyed-hashed by ingest)
    table = work / "nifti.csv"
    with open(table, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "subject_id", "study_id", "modality", "sequence", "split"])
        w.writerow([name, study_key, study_key, modality, sequence or "", "test"])
    return folder, table
