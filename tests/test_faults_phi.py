"""Failure paths a hospital export walks and the tests of the normal path do not (issue 18, items 1, 2, 4).

An export whose folder and file names carry a planted name and MRN (and whose headers carry them too) is
ingested; then files are moved, truncated and made unreadable before preprocessing. Every failure must
reach results/ as a reason code and a PHI-free detail (grep of everything under results/, logs included),
the raw messages must be in private/{run}/errors/, and restoring the files then rerunning must include
the series again, with shards bitwise equal to an undisturbed run. User mistakes (export root a file,
empty export, nothing includable, reports CSV without a required column, wrong config) end in one line
that says what to fix, without a traceback.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pydicom
import pytest
import yaml
from dicom_factory import Spec, Study, truncate, write_raw, write_series

from neurovfm import pipeline
from neurovfm.config import default_config
from neurovfm.ingest import volume as volume_module
from neurovfm.utils.failure import VOCABULARY, is_transient
from neurovfm.utils.stage import step

ROOT = Path(__file__).resolve().parent.parent
FAMILY, GIVEN, MRN = "Zyxwvut", "Quentinella", "MRN98765432"
NEEDLES = [FAMILY.lower(), GIVEN.lower(), MRN.lower(), "98765432"]
KEY_ENV = {"NEUROVFM_DEID_KEY": "faults-test-key"}
SERIES = {"t2": "AX T2", "flair": "AX FLAIR", "t1": "AX T1", "swi": "AX SWI", "raw": "AX PD"}


def _config(tmp: Path, results: str = "results") -> dict:
    return default_config(
        run="phi",
        seed=7,
        paths={"results": str(tmp / results), "private": str(tmp / "private")},
        input={"dicom_dir": str(tmp / "export")},
        splits={"val_per_modality": 0},
        preprocess={"workers": 1},
    )


def _export(root: Path) -> dict[str, list[str]]:
    """Five series in folders and files named after the patient; ``raw`` has files without the DICOM
    preamble (bare data sets), which ingest accepts and preprocessing must read too."""
    st = Study(patient_name=f"{FAMILY}^{GIVEN}", patient_id=MRN, study_date="20200601")
    out = {}
    for name, desc in SERIES.items():
        folder = f"{FAMILY}_{GIVEN}_{MRN}/{name}"
        paths = write_series(
            str(root), Spec(description=desc, rows=40, cols=40, pixel_spacing=(1.0, 1.0)), st, folder=folder
        )
        renamed = []
        for p in paths:
            new = os.path.join(os.path.dirname(p), f"{FAMILY}_{MRN}_{os.path.basename(p)}.dcm")
            if name == "raw":
                write_raw(new, pydicom.dcmread(p))
                os.remove(p)
            else:
                os.rename(p, new)
            renamed.append(new)
        out[name] = renamed
    return out


def _grep_results(results: Path) -> int:
    """Assert that no planted token is in any file name or content under ``results``; returns files checked."""
    n = 0
    for dirpath, _, names in os.walk(results):
        for name in names:
            path = os.path.join(dirpath, name)
            text = (path + open(path, encoding="utf-8", errors="replace").read()).lower()
            for needle in NEEDLES:
                assert needle not in text, f"{needle!r} in {path}"
            n += 1
    return n


def _preprocess(cfg: dict, tmp: Path) -> dict:
    """The preprocess rule's script, in this process: its log under results/{run}/logs/."""
    res = Path(cfg["paths"]["results"]) / "phi"
    priv = Path(cfg["paths"]["private"]) / "phi"
    (res / "logs").mkdir(parents=True, exist_ok=True)
    with step("preprocess", cfg, str(res / "logs" / "preprocess.log")):
        return pipeline.preprocess(
            cfg, res / "ingest" / "series.csv", priv / "files.csv", tmp / "export", res / "shards", threads=1
        )


def _cli(*args, cwd=None):
    env = {**os.environ, **KEY_ENV, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "neurovfm.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def _write_config(tmp: Path, cfg: dict) -> Path:
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture()
def deny(monkeypatch):
    """Make reading the given paths fail with EACCES. chmod 000 does that for an ordinary user; the suite
    may run as root, which chmod cannot stop, so the loader's ``open`` is wrapped instead."""
    denied: set[str] = set()

    def fake_open(path, *args, **kwargs):
        if str(path) in denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(volume_module, "open", fake_open, raising=False)
    return denied


def test_failures_reach_results_as_codes_and_a_rerun_retries_transient_ones(tmp_path, monkeypatch, deny):
    for k, v in KEY_ENV.items():
        monkeypatch.setenv(k, v)
    files = _export(tmp_path / "export")
    cfg = _config(tmp_path)
    res, priv = tmp_path / "results" / "phi", tmp_path / "private" / "phi"
    cfg_path = _write_config(tmp_path, cfg)
    out = _cli("ingest", "--config", cfg_path, "--log", res / "logs" / "ingest.log", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["n_volumes"] == len(SERIES)

    # an undisturbed run (same export, same key) for the bitwise comparison at the end
    clean = _config(tmp_path, results="clean")
    shutil.copytree(res / "ingest", tmp_path / "clean" / "phi" / "ingest")
    _preprocess(clean, tmp_path)

    # between ingest and preprocessing: one file moved away, one truncated, one unreadable
    moved = files["t2"][4]
    shutil.move(moved, tmp_path / "elsewhere.dcm")
    cut = files["flair"][2]
    saved = Path(cut).read_bytes()
    truncate(cut, 1000)
    locked = files["t1"][7]
    deny.add(locked)
    if os.geteuid() != 0:
        os.chmod(locked, 0)
    summary = _preprocess(cfg, tmp_path)
    assert summary["excluded_by_reason"] == {"file_missing": 1, "permission_denied": 1, "truncated_file": 1}
    assert summary["n_excluded_transient"] == 2
    ledger = pd.read_csv(res / "shards" / "exclusions.csv", dtype=str, keep_default_na=False)
    ids = pd.read_csv(priv / "files.csv", dtype=str).set_index("path")["file_id"]
    export = tmp_path / "export"
    by_reason = ledger.set_index("reason")
    # the ledger names the file at fault by its keyed id (private/{run}/files.csv maps it back), never by path
    assert by_reason.at["file_missing", "file_id"] == ids[os.path.relpath(moved, export)]
    assert by_reason.at["truncated_file", "file_id"] == ids[os.path.relpath(cut, export)]
    assert by_reason.at["permission_denied", "file_id"] == ids[os.path.relpath(locked, export)]
    assert "truncated" in by_reason.at["truncated_file", "detail"]
    assert set(ledger["reason"]) <= set(VOCABULARY)
    assert [is_transient(r) for r in sorted(ledger["reason"])] == [True, True, False]
    # nothing planted anywhere under results/: ledgers, sidecars, summaries, the logs of both steps
    assert _grep_results(tmp_path / "results") >= 10
    assert "phi" in os.listdir(tmp_path / "results") and (res / "logs" / "preprocess.log").stat().st_size > 0
    # the raw messages, with the paths a person needs, are in private/{run}/errors/
    raw = (priv / "errors" / "preprocess.log").read_text()
    assert os.path.basename(moved) in raw and os.path.basename(locked) in raw

    # a rerun without a fix keeps the bad-data exclusion, retries the transient ones (still failing)
    again = _preprocess(cfg, tmp_path)
    assert again["excluded_by_reason"] == summary["excluded_by_reason"]
    # restore every file: the rerun retries the transient exclusions and the truncated file (it changed)
    shutil.move(tmp_path / "elsewhere.dcm", moved)
    Path(cut).write_bytes(saved)
    deny.clear()
    os.chmod(locked, 0o644)
    fixed = _preprocess(cfg, tmp_path)
    assert fixed["n_excluded"] == 0 and fixed["splits"]["train"]["volumes"] == len(SERIES)
    assert "retrying 3 excluded series" in (res / "logs" / "preprocess.log").read_text()
    for split in ("train", "val", "test"):
        for path in sorted((tmp_path / "clean" / "phi" / "shards" / split).iterdir()):
            assert (res / "shards" / split / path.name).read_bytes() == path.read_bytes(), path.name
    _grep_results(tmp_path / "results")


def test_ingest_ledgers_file_system_faults_as_transient(tmp_path, monkeypatch):
    """A file that cannot be opened at ingest is ledgered as permission_denied (transient, counted in the
    summary), never with its path; once readable, a rerun includes it."""
    from neurovfm.ingest import discover

    for k, v in KEY_ENV.items():
        monkeypatch.setenv(k, v)
    files = _export(tmp_path / "export")
    cfg = _config(tmp_path)
    res, priv = tmp_path / "results" / "phi", tmp_path / "private" / "phi"
    locked = files["t2"][3]

    def fake_open(path, *args, **kwargs):
        if str(path) == locked:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(discover, "open", fake_open, raising=False)
    summary = pipeline.ingest(cfg, tmp_path / "export", None, res / "ingest", priv, threads=1)
    assert summary["excluded_files_by_reason"] == {"missing_slices": 11, "permission_denied": 1}
    assert summary["n_files_excluded_transient"] == 1
    ledger = pd.read_csv(res / "ingest" / "exclusions.csv", dtype=str, keep_default_na=False)
    assert set(ledger["reason"]) == {"missing_slices", "permission_denied"}
    _grep_results(tmp_path / "results")
    monkeypatch.undo()
    for k, v in KEY_ENV.items():
        monkeypatch.setenv(k, v)
    again = pipeline.ingest(cfg, tmp_path / "export", None, res / "ingest", priv, threads=1)
    assert again["n_volumes"] == len(SERIES) and again["n_files_excluded"] == 0


def test_bare_data_sets_and_truncation_are_explained(tmp_path):
    """A file without the DICOM preamble (included by ingest) is read by preprocessing; a truncated one is
    described as truncated, not with pydicom's advice to use force=True."""
    files = _export(tmp_path / "export")
    arr = volume_module.load_series_volume(files["raw"][:1], [1, 0, 0, -10, 0, 1, 0, -20, 0, 0, 2.5, 30, 0, 0, 0, 1])
    assert arr.shape == (1, 40, 40)
    truncate(files["raw"][0], 500)
    with pytest.raises(volume_module.VolumeError) as err:
        volume_module.load_series_volume(files["raw"][:1], [1, 0, 0, -10, 0, 1, 0, -20, 0, 0, 2.5, 30, 0, 0, 0, 1])
    assert err.value.reason == "truncated_file" and "force" not in str(err.value)
    Path(files["t2"][0]).write_bytes(b"\x00" * 64)
    with pytest.raises(volume_module.VolumeError) as err:
        volume_module.load_series_volume(files["t2"][:1], [1, 0, 0, -10, 0, 1, 0, -20, 0, 0, 2.5, 30, 0, 0, 0, 1])
    assert err.value.reason == "not_dicom" and "force" not in str(err.value)


def _one_line_error(res, *needles):
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("neurovfm")]
    assert len(lines) == 1, res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_user_mistakes_end_in_one_line(tmp_path):
    cfg = _config(tmp_path)
    cfg_path = _write_config(tmp_path, cfg)
    res_dir = tmp_path / "results"
    logs = res_dir / "phi" / "logs"
    # the export root is a file (named after the patient: the log under results/ must not say so)
    (tmp_path / "export").mkdir()
    a_file = tmp_path / "export" / f"{FAMILY}_{MRN}.dcm"
    a_file.write_bytes(b"not dicom")
    _one_line_error(
        _cli("ingest", "--config", cfg_path, "--dicom-dir", a_file, "--log", logs / "a.log", cwd=tmp_path), "is a file"
    )
    assert "bad_input_path" in (logs / "a.log").read_text()
    # an export without any DICOM file: a non-zero exit with the reason (unless ingest.allow_empty)
    empty = tmp_path / f"{FAMILY}_{GIVEN}_{MRN}_empty"
    empty.mkdir()
    _one_line_error(
        _cli("ingest", "--config", cfg_path, "--dicom-dir", empty, "--log", logs / "b.log", cwd=tmp_path),
        "no DICOM file",
    )
    assert "empty_export" in (logs / "b.log").read_text()
    allowed = _cli(
        "ingest", "--config", cfg_path, "--dicom-dir", empty, "--set", "ingest.allow_empty=true", cwd=tmp_path
    )
    assert allowed.returncode == 0 and json.loads(allowed.stdout)["n_volumes"] == 0
    # files, but nothing includable: the message counts the reasons
    line = _one_line_error(
        _cli("ingest", "--config", cfg_path, "--log", logs / "c.log", cwd=tmp_path),
        "none of the 1 files",
        "not_dicom 1",
    )
    assert FAMILY not in line
    # a reports CSV without a required column names it and the columns found
    _export(tmp_path / "export2")
    pd.DataFrame([{"accession": "ACC1", "report_text": "normal"}]).to_csv(tmp_path / "reports.csv", index=False)
    _one_line_error(
        _cli(
            "ingest",
            "--config",
            cfg_path,
            "--dicom-dir",
            tmp_path / "export2",
            "--reports-csv",
            tmp_path / "reports.csv",
            "--log",
            logs / "d.log",
            cwd=tmp_path,
        ),
        "accession_number",
        "columns found: accession",
    )
    # the raw messages, paths included, are kept privately for whoever debugs
    assert a_file.name in (tmp_path / "private" / "phi" / "errors" / "ingest.log").read_text()
    # a wrong config value: the key and the allowed values, a few lines, no schema
    bad = tmp_path / "bad.yaml"
    bad.write_text("labels: {extractor: regex}\npreprocess: {fit: squeeze}\n")
    out = _cli("check-config", "--config", bad, cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "labels.extractor" in out.stderr and "allowed values: rules, llm" in out.stderr
    assert "preprocess.fit" in out.stderr and len(out.stderr.strip().splitlines()) <= 4
    smk = subprocess.run(
        [sys.executable, "-m", "snakemake", "all", "-n", "--cores", "1", "--configfile", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert smk.returncode != 0 and "allowed values: rules, llm" in smk.stderr + smk.stdout
    assert "Failed validating" not in smk.stderr + smk.stdout and "$schema" not in smk.stderr + smk.stdout
    # nothing of the planted names reached results/ on any of these paths (the four failure logs included)
    assert _grep_results(res_dir) >= 8


def test_docs_document_every_failure_code():
    """The table of reason codes (docs/troubleshooting.md) is the vocabulary of neurovfm.utils.failure, transient
    flags included."""
    import re

    section = (ROOT / "docs" / "troubleshooting.md").read_text()
    rows = [ln for ln in section.splitlines() if ln.startswith("| `")]
    documented = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        for code in re.findall(r"`([a-z_0-9]+)`", cells[0]):
            documented[code] = cells[1] == "yes"
    assert documented == {code: reason.transient for code, reason in VOCABULARY.items()}
