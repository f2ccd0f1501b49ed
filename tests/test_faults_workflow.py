"""The README's instructions for real inputs, run as written through snakemake (issue 18, items 3 and 5).

The YAML blocks are read from the README itself (only the /data paths are replaced by a small export
written here), so the README cannot drift from what works: the three-key ``my_run.yaml`` for a DICOM
export (a partial config overlaid on the defaults, with ``--directory`` outside the checkout, and through
the CLI), and the NIfTI example (which crashed in ``export_dir`` before any job ran).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from dicom_factory import Spec, Study, write_series

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "NEUROVFM_DEID_KEY": "workflow-test-key", "OMP_NUM_THREADS": "1"}


def readme_yaml(marker: str) -> str:
    """The README's ```yaml block that contains ``marker``."""
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"{len(found)} README yaml blocks contain {marker!r}"
    return found[0]


def readme_commands(marker: str) -> list[list[str]]:
    """The snakemake command lines of the README's ```bash block that contains ``marker`` (continuations joined)."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"{len(found)} README bash blocks contain {marker!r}"
    lines = found[0].replace("\\\n", " ").splitlines()
    return [shlex.split(ln.split("#")[0]) for ln in lines if ln.startswith("snakemake ")]


def snakemake(*args, cwd):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=ENV, timeout=600)


def _dicom_export(root: Path) -> Path:
    st = Study(accession="ACC0001", study_date="20200601")
    for i, desc in enumerate(("AX T2", "AX FLAIR", "AX T1")):
        write_series(
            str(root / "dicom"), Spec(description=desc, rows=40, cols=40, pixel_spacing=(1.0, 1.0)), st, folder=f"s{i}"
        )
    pd.DataFrame([{"accession_number": "ACC0001", "report_text": "FINDINGS: No acute abnormality."}]).to_csv(
        root / "reports.csv", index=False
    )
    return root


def test_readme_my_run_yaml_through_snakemake_and_cli(tmp_path):
    data = _dicom_export(tmp_path / "data")
    text = (
        readme_yaml("run: um2024")
        .replace("/data/pacs_export", str(data / "dicom"))
        .replace("/data/reports.csv", str(data / "reports.csv"))
    )
    assert len([ln for ln in text.splitlines() if ln and not ln.startswith(" ")]) == 3  # three keys, as documented
    project = tmp_path / "project"  # outside the checkout
    project.mkdir()
    (project / "my_run.yaml").write_text(text)
    in_checkout, elsewhere = readme_commands("/path/to/neurovfm/Snakefile")
    # the README's commands as written (a dry run in the checkout: the file is the only thing moved)
    cmd = [a if a != "my_run.yaml" else str(project / "my_run.yaml") for a in in_checkout] + ["-n"]
    dry = subprocess.run([sys.executable, "-m", *cmd], cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=600)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    stats = dry.stdout.split("Job stats")[-1].split("\n\n")[0]
    assert "ingest" in stats and "synth" not in stats  # a real export: no synthetic one
    # the outside-the-checkout command, run for real up to ingest
    cmd = [a.replace("/path/to/neurovfm", str(ROOT)).replace("/project", str(project)) for a in elsewhere]
    cmd = ["results/um2024/ingest/series.csv" if a == "all" else a for a in cmd]
    run = subprocess.run(
        [sys.executable, "-m", *cmd], cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=600
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    series = pd.read_csv(project / "results" / "um2024" / "ingest" / "series.csv")
    assert len(series) == 3
    assert (project / "private" / "um2024" / "reports.jsonl").read_text().count("\n") == 1
    # the same file through the CLI, from the project folder, gives the same tables
    cli = tmp_path / "cli"
    cli.mkdir()
    (cli / "my_run.yaml").write_text(text)
    out = subprocess.run(
        [sys.executable, "-m", "neurovfm.cli", "ingest", "--config", "my_run.yaml"],
        cwd=cli,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    for name in ("series.csv", "studies.csv", "exclusions.csv"):
        assert (cli / "results" / "um2024" / "ingest" / name).read_bytes() == (
            project / "results" / "um2024" / "ingest" / name
        ).read_bytes()


def _nifti_dataset(root: Path) -> None:
    """Four small T1-like volumes (an ellipsoid head with noise), RAS affines at 1 x 1 x 4 mm."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        shape = (48, 56, 12)
        x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
        head = (x / 0.8) ** 2 + (y / 0.85) ** 2 + (z / 0.9) ** 2 < 1
        vol = (head * (300 + 40 * i) + rng.normal(0, 10, shape)).astype(np.float32)
        affine = np.diag([1.0, 1.0, 4.0, 1.0])
        affine[:3, 3] = [-24, -28, -24]
        (root / "sub").mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(vol, affine), root / "sub" / f"sub-{i:02d}_T1w.nii.gz")
        rows.append(
            {
                "file": f"sub/sub-{i:02d}_T1w.nii.gz",
                "subject_id": f"sub-{i:02d}",
                "modality": "MR",
                "sequence": "t1",
                "age": 40 + i,
                "sex": "F",
                "dx": i % 2,
            }
        )
    pd.DataFrame(rows).to_csv(root / "subjects.csv", index=False)


def test_readme_nifti_example_through_snakemake(tmp_path):
    data = tmp_path / "bench1"
    _nifti_dataset(data)
    text = readme_yaml("kind: nifti").replace("/data/bench1", str(data))
    project = tmp_path / "project"
    project.mkdir()
    (project / "bench1.yaml").write_text(text)
    dry = snakemake("all", "-n", "--cores", "1", "--configfile", "bench1.yaml", "--directory", project, cwd=project)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    # the README's command line, from the project folder (the profile and Snakefile found in the checkout)
    line = re.search(r"`(snakemake --profile profiles/local results/bench1[^`]*)`", (ROOT / "README.md").read_text())
    cmd = [str(ROOT / a) if a == "profiles/local" else a for a in shlex.split(line.group(1))]
    run = subprocess.run(
        [sys.executable, "-m", *cmd, "-s", str(ROOT / "Snakefile"), "--directory", str(project)],
        cwd=project,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    res = project / "results" / "bench1"
    assert len(pd.read_csv(res / "ingest" / "series.csv")) == 4
    assert list(pd.read_csv(res / "ingest" / "nifti_labels.csv").columns) == ["study_id", "split", "dx"]
    summary = pd.read_json(res / "shards" / "summary.json", typ="series")
    assert summary["n_excluded"] == 0 and summary["n_series_in"] == 4
    assert (res / "logs" / "preprocess.log").is_file()
