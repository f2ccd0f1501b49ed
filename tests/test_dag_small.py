"""The small test DAG (.test/config/config.yaml, snakemake-workflows' .test/ convention) through snakemake:
every rule of ``all`` runs, each file a rule writes is one it declares, and ``snakemake --report`` holds every
figure of ``all`` with its caption. The DAG also builds the model bundle, which tests/test_predict.py reads.

CI (.ci/run) builds the DAG first with the command of conftest's ``TEST_DAG`` and ``TEST_TARGETS`` (and times
it); here the same command then has nothing left to do. Run alone, this module builds it (about 5 minutes on 2
cores).
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from conftest import TEST_DIR, TEST_TARGETS
from conftest import test_dag_snakemake as _snakemake

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def test_dag(small_dag):
    summary = _snakemake("--cores", "1", "--detailed-summary", *TEST_TARGETS, timeout=300)
    assert summary.returncode == 0, summary.stderr[-3000:]
    rows = list(csv.DictReader(io.StringIO(summary.stdout), delimiter="\t"))
    assert rows, summary.stdout[-2000:]
    return {**small_dag, "rows": rows}


def test_every_rule_of_all_ran_and_nothing_is_left(test_dag):
    rules_of_all = set(re.findall(r"^(?:local)?rule (\w+):", _dry_forceall(), flags=re.M))
    ran = {r["rule"] for r in test_dag["rows"]}
    assert rules_of_all - {"all"} <= ran, f"rules of `all` without outputs: {rules_of_all - ran}"
    assert all(r["status"] == "ok" for r in test_dag["rows"]), [r for r in test_dag["rows"] if r["status"] != "ok"][:5]
    again = _snakemake("--cores", "1", "-n", *TEST_TARGETS, timeout=300)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]


def _dry_forceall() -> str:
    dry = _snakemake("--cores", "1", "-n", "--forceall", "all", timeout=300)
    assert dry.returncode == 0, dry.stderr[-3000:]
    return dry.stdout + dry.stderr


def _store_files(index: Path) -> set[Path]:
    """The data files a store's index.json lists (shards and feature chunks), with each one's .json sidecar."""
    meta = json.loads(index.read_text())
    listed = set()
    for entry in [*meta.get("shards", []), *meta.get("chunks", [])]:
        for key in ("file", "coords_file"):
            if key in entry:
                listed.add(index.parent / entry[key])
        listed.add(index.parent / Path(entry["file"]).with_suffix(".json"))
    return listed


# Files a rule writes on purpose without declaring them: resume state, which snakemake would delete before a
# rerun if it were an output (the rule's docstring says so).
RESUME_STATE = re.compile(r"^(pretrain/[^/]+|reportgen/[^/]+/n\d+)/checkpoint\.pt$")


def test_rules_write_what_they_declare(test_dag):
    declared, dirs, logs = set(), [], set()
    for row in test_dag["rows"]:
        path = (TEST_DIR / row["output_file"]).resolve()
        if path.is_dir():
            dirs.append(path)
        else:
            declared.add(path)
        logs.update((TEST_DIR / p).resolve() for p in row["log-file(s)"].split(",") if p and p != "-")
    rules = {row["rule"] for row in test_dag["rows"]}
    stores = [p for p in declared if p.name == "index.json"]
    listed = set().union(*(_store_files(p) for p in stores))
    res, priv = test_dag["results"].resolve(), test_dag["private"].resolve()
    undeclared, missing = [], []
    for base in (res, priv):
        for path in base.rglob("*"):
            if not path.is_file() or path in declared or path in logs or path in listed:
                continue
            if any(d in path.parents for d in dirs):
                continue
            rel = path.relative_to(res) if base == res else Path("private") / path.relative_to(priv)
            if base == res and rel.parts[0] == "benchmarks" and any(rel.name.startswith(r) for r in rules):
                continue  # benchmark: files, one per job
            if base == res and RESUME_STATE.match(rel.as_posix()):
                continue
            undeclared.append(rel.as_posix())
    for path in declared | listed:
        if not path.exists():
            missing.append(str(path))
    assert not undeclared, f"files written but not declared by their rule: {sorted(undeclared)[:20]}"
    assert not missing, f"declared or indexed but absent: {sorted(missing)[:20]}"
    assert any(p.name == "extract_errors.csv" for p in declared)


def test_outputs_pass_their_checks(test_dag):
    res = test_dag["results"]
    pngs = sorted((res / "figures").glob("*.png"))
    assert len(pngs) >= 17, [p.name for p in pngs]
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, png
        assert png.with_suffix(".pdf").is_file() and png.with_suffix(".csv").is_file(), png
    laterality = list(csv.DictReader(open(res / "tables" / "laterality.csv")))
    assert laterality and all(r["status"] == "ok" or r["reason"] for r in laterality), laterality
    # the re-scored studies: none when no encoder and modality had enough correctly detected lateralised studies
    may_be_empty = {"laterality_studies.csv"} if all(r["status"] != "ok" for r in laterality) else set()
    for table in (res / "tables").glob("*.csv"):
        with open(table) as fh:
            assert sum(1 for _ in fh) >= 2 or table.name in may_be_empty, f"{table.name} has no rows"
    macro = [r for r in csv.DictReader(open(res / "labels" / "extractor_eval.csv")) if r["label"] == "macro"]
    assert {r["modality"] for r in macro} == {"CT", "MR"}, macro
    assert all(float(r["f1"]) > 0.9 for r in macro), macro


def test_shared_jobs_are_used_not_redone(test_dag):
    """The jobs the workflow runs early on behalf of later ones are taken up: every curated size's report generator
    loads the text-only stage 0 (same studies from the shards as from the features), the anatomy analysis the
    reference maps (the same volumes chosen)."""
    logs = test_dag["results"] / "logs"
    trains = sorted(logs.glob("reportgen_train_*.log"))
    assert trains
    for log in trains:
        text = log.read_text()
        assert "stage 0 trains here" not in text, log.name
        # a fresh DAG loads the file; a rerun of an existing one may resume its own checkpoint (stage 0 done)
        assert "stage 0 taken from the text-only job" in text or "stage 0 finished in the checkpoint" in text, log.name
    anatomy = (logs / "anatomy.log").read_text()
    assert "anatomy:" in anatomy and "building the maps here" not in anatomy


def test_report_holds_every_figure_with_its_caption(test_dag, tmp_path):
    out = tmp_path / "report.zip"
    built = _snakemake("--cores", "1", "--report", str(out), "all", timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        html = zf.read(next(n for n in names if n.endswith("report.html"))).decode()
    figures = {Path(p).name for p in (test_dag["results"] / "figures").glob("*.png")}
    in_report = {Path(n).name for n in names if n.endswith(".png")}
    assert figures <= in_report, f"figures of `all` missing from the report: {sorted(figures - in_report)}"
    for category in ("Dataset", "Pretraining", "Diagnosis", "Analyses", "Report generation"):
        assert category in html, category
    # captions are rendered into the report (one phrase of each kind of caption)
    for phrase in ("Vol-JEPA training log", "Fig. 2a", "Fig. 4d", "Report labeller"):
        assert phrase in html, phrase


def test_readme_and_ci_build_the_same_test_dag():
    """The test DAG's command in the README and in .ci/checks.sh is the one these tests run (conftest.py)."""
    import shlex

    from conftest import ROOT, TEST_DAG

    def commands(text: str) -> list[list[str]]:
        joined = re.sub(r"\\\n\s*", " ", text)
        return [shlex.split(ln.strip()) for ln in joined.splitlines() if "--directory .test" in ln]

    want = ["snakemake", *TEST_DAG, "--cores", "2", *TEST_TARGETS]
    readme = commands((ROOT / "README.md").read_text())
    ci = commands((ROOT / ".ci" / "checks.sh").read_text())
    assert readme == [want] and ci == [want], (readme, ci)
