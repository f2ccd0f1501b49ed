"""Model bundle and ``neurovfm predict`` (issue 19) on the small test DAG (.test/config/config.yaml: 72 studies, a few
pretraining steps, two report-generator sizes), which builds the bundle besides every output of ``all``. Then:

* the bundle's manifest is checked at load (a changed, missing or extra file is refused) and a Hugging Face-style
  cache copy of it loads as the same bundle; the model card's counts are the run's;
* ``neurovfm predict`` over copies of the test studies' DICOM files (nested in folders named after a planted
  patient, with planted names, MRN and accession in the headers, a non-DICOM file and a truncated one) reproduces
  the workflow's test probabilities, generated findings and triage levels, writes a prediction.json valid against
  the committed schema for every study, reports the planted bad files with their reason codes, and leaves no
  planted token in any output -- unless ``--keep-identifiers`` is given (the positive control of the grep);
* the attention peak's side follows the lesion: on the synthetic study with a lateralised finding, a class
  attention concentrated at the lesion (its ground-truth centre) is reported on the lesion's side, and at the
  mirrored point on the other side;
* a NIfTI file of a test series goes through the same path (``--modality``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
FAMILY, GIVEN, MRN, ACC = "Zyxwvut", "Quentinella", "MRN98765432", "ACC55501234"
NEEDLES = [FAMILY.lower(), GIVEN.lower(), "98765432", "55501234"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]  # the small test DAG, if not yet built: about 5 minutes


def _cli(*args, check=True):
    """``neurovfm`` in a child process, run outside the checkout (a failure's raw message goes to the private
    folder of the working directory)."""
    out = subprocess.run(
        [sys.executable, "-m", "neurovfm.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tempfile.gettempdir(),
    )
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def scratch():
    """A folder of this module's own, outside pytest's numbered temporary folders: pytest keeps only the three
    newest of those per user, so another session on a shared machine may delete one while a child process writes
    into it."""
    with tempfile.TemporaryDirectory(prefix="neurovfm-test-predict-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="module")
def run(small_dag, scratch):
    """The small test DAG's folders, its bundle, and the names of the bundle's encoder and report generator (the
    bundle's own config.yaml, as workflow/rules/bundle.smk picks them)."""
    res = small_dag["results"]
    cfg = yaml.safe_load((res / "bundle" / "config.yaml").read_text())
    encoder = cfg["bundle"]["encoder"] or cfg["pretrain"]["train"][0]
    size = cfg["bundle"]["reportgen_size"] or max(int(n) for n in cfg["reportgen"]["sizes"])
    return {
        "tmp": scratch,
        "res": res,
        "priv": small_dag["private"],
        "bundle": res / "bundle",
        "encoder": encoder,
        "generator": f"{encoder}/n{size}",
    }


def _test_studies(run) -> pd.DataFrame:
    studies = pd.read_csv(run["res"] / "ingest" / "studies.csv", dtype={"study_id": str})
    return studies[studies["split"] == "test"]


def _copy_study(run, study_id: str, dest: Path, plant: bool) -> list[Path]:
    """The study's DICOM files under ``dest``, two folder levels deep with new names (the planted patient's when
    ``plant``), headers carrying the planted name, MRN and accession when ``plant``."""
    series = pd.read_csv(run["res"] / "ingest" / "series.csv", dtype=str)
    files = pd.read_csv(run["priv"] / "files.csv", dtype=str)
    export = run["res"] / "pacs_export" / "dicom"
    sids = set(series[series["study_id"] == study_id]["series_id"])
    out = []
    for k, sid in enumerate(sorted(sids)):
        folder = (
            dest / (f"{FAMILY}_{GIVEN}_{MRN}" if plant else f"study_{study_id[:6]}") / f"s{k}_{ACC if plant else k}"
        )
        folder.mkdir(parents=True, exist_ok=True)
        for j, rel in enumerate(files[files["series_id"] == sid]["path"]):
            target = folder / (f"{FAMILY}_{j:03d}.dcm" if plant else f"{j:03d}")
            if plant:
                ds = pydicom.dcmread(export / rel)
                ds.PatientName, ds.PatientID, ds.AccessionNumber = f"{FAMILY}^{GIVEN}", MRN, ACC
                ds.save_as(target)
            else:
                shutil.copyfile(export / rel, target)
            out.append(target)
    return out


def _grep(root: Path) -> list[str]:
    hits = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            text = (str(path.relative_to(root)) + "\n").lower().encode() + path.read_bytes().lower()
            hits += [f"{path.relative_to(root)}: {n}" for n in NEEDLES if n.encode() in text]
    return hits


# --------------------------------------------------------------------------------------------------- the bundle
def test_bundle_is_verified_at_load_and_loads_from_a_hugging_face_layout(run, tmp_path):
    from neurovfm.bundle.load import load_bundle
    from neurovfm.bundle.manifest import MANIFEST
    from neurovfm.utils.failure import Failed

    b = load_bundle(run["bundle"])
    manifest = json.loads((run["bundle"] / MANIFEST).read_text())
    for part in (
        "encoder/encoder.pt",
        "preprocess/stats.json",
        "probes/ct/probe.pt",
        "probes/mri/calibration.csv",
        "reportgen/connector.pt",
        "reportgen/lm/tokenizer.json",
        "config.yaml",
        "model_card.json",
    ):
        assert part in manifest["files"], part
    assert b.bundle_id == manifest["bundle_id"]

    for change in ("edit", "remove", "add"):
        copy = tmp_path / change
        shutil.copytree(run["bundle"], copy)
        target = copy / "probes" / "ct" / "thresholds.csv"
        if change == "edit":
            target.write_text(target.read_text().replace("0", "1", 1))
        elif change == "remove":
            target.unlink()
        else:
            (copy / "notes.txt").write_text("x")
        with pytest.raises(Failed) as err:
            load_bundle(copy)
        assert err.value.reason == "bad_input_path"
    # through the command: one line naming the problem, exit status 2, nothing predicted
    out = _cli("predict", "--bundle", tmp_path / "edit", "--out", tmp_path / "never", tmp_path, check=False)
    assert out.returncode == 2 and "sha256" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "never").exists()

    # Hugging Face cache layout: refs/main names a snapshot whose files are links into blobs/
    hf = tmp_path / "hub" / "models--hospital--neurovfm-demo"
    rev = "0123456789abcdef0123456789abcdef01234567"
    for rel, meta in manifest["files"].items():
        blob = hf / "blobs" / meta["sha256"]
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run["bundle"] / rel, blob)
        link = hf / "snapshots" / rev / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    shutil.copyfile(run["bundle"] / MANIFEST, hf / "snapshots" / rev / MANIFEST)
    (hf / "refs").mkdir()
    (hf / "refs" / "main").write_text(rev)
    assert load_bundle(hf).bundle_id == b.bundle_id


def test_model_card_counts_and_scores_are_the_runs(run):
    card = json.loads((run["bundle"] / "model_card.json").read_text())
    studies = pd.read_csv(run["res"] / "ingest" / "studies.csv")
    for (split, mod), g in studies.groupby(["split", "modality"]):
        assert card["training_data"]["studies_by_split_and_modality"][split][mod] == len(g)
    for mod in ("ct", "mri"):
        table = pd.read_csv(run["res"] / "tables" / f"diagnosis_{mod}_{run['encoder']}.csv")
        rows = {r["label"]: r for r in card["test_auroc"][mod]}
        assert list(rows) == list(table["label"])
        for r in table.to_dict("records"):
            if not np.isnan(r["auroc"]):
                assert rows[r["label"]]["auroc"] == pytest.approx(r["auroc"])
                assert rows[r["label"]]["auroc_lo"] <= rows[r["label"]]["auroc"] <= rows[r["label"]]["auroc_hi"]
    md = (run["bundle"] / "MODEL_CARD.md").read_text()
    assert "## Intended use" in md and "## Limits" in md and card["date_window"]["test_from"] in md


# ------------------------------------------------------------------------------------ predict = the workflow
@pytest.fixture(scope="module")
def predicted(run, scratch):
    """``neurovfm predict`` over one folder holding every test study (copied, planted PHI in the first one's
    folders and headers, a non-DICOM file and a truncated DICOM beside it)."""
    tmp = scratch / "predicted"
    studies = _test_studies(run)
    export = tmp / "export"
    planted = studies["study_id"].iloc[0]
    for sid in studies["study_id"]:
        files = _copy_study(run, sid, export, plant=sid == planted)
    odd = export / f"{FAMILY}_{GIVEN}_{MRN}"
    (odd / "notes.txt").write_text("not an image\n")
    blob = files[0].read_bytes()
    (odd / "cut.dcm").write_bytes(blob[: len(blob) // 3])
    short = export / "short" / "a"  # a study of its own with too few slices: excluded whole, reported
    short.mkdir(parents=True)
    for j, f in enumerate(sorted(files)[:3]):
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.19.1", "1.2.826.0.1.3680043.8.498.19.2"
        ds.save_as(short / f"{j}.dcm")
    out = tmp / "out"
    res = _cli("predict", "--bundle", run["bundle"], "--out", out, export)
    from neurovfm.ingest.deid import keyed_hash

    short_id = keyed_hash("1.2.826.0.1.3680043.8.498.19.1", b"neurovfm-demo-key-not-secret", "study")
    return {
        "out": out,
        "stdout": res.stdout,
        "studies": studies,
        "planted": planted,
        "export": export,
        "tmp": tmp,
        "short_id": short_id,
    }


def _records(out: Path) -> dict:
    return {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/prediction.json")}


def test_predict_reproduces_the_workflows_probabilities_findings_and_triage(run, predicted):
    from neurovfm.predict.record import validate_record

    recs = _records(predicted["out"])
    test_ids = set(predicted["studies"]["study_id"])
    assert set(recs) == test_ids
    lines = [ln for ln in predicted["stdout"].splitlines() if ln.startswith("[")]
    assert len([ln for ln in lines if not ln.startswith("[-]")]) == len(test_ids)  # a progress line per study
    n_compared = 0
    for mod, modality in (("ct", "CT"), ("mri", "MR")):
        preds = pd.read_csv(run["res"] / "probes" / run["encoder"] / mod / "predictions.csv", dtype={"study_id": str})
        preds = preds[preds["split"] == "test"].set_index("study_id")
        for sid, rec in recs.items():
            if rec["study"]["modality"] != modality or sid not in preds.index:
                continue
            got = np.array([d["probability"] for d in rec["diagnoses"]])
            want = preds.loc[sid, [f"prob:{d['name']}" for d in rec["diagnoses"]]].to_numpy(float)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, err_msg=sid)
            decision = [d["positive"] for d in rec["diagnoses"]]
            assert decision == [bool(preds.loc[sid, f"pred:{d['name']}"]) for d in rec["diagnoses"]], sid
            n_compared += 1
    assert n_compared >= 2
    gens = [json.loads(ln) for ln in (run["res"] / "reportgen" / run["generator"] / "generations.jsonl").open()]
    gens = {g["study_id"]: g for g in gens if g["variant"] == "no_indication"}
    assert gens
    for sid, g in gens.items():
        assert recs[sid]["generated"]["raw"] == g["raw"], sid
        assert recs[sid]["generated"]["status"] == g["status"]
    triage = pd.read_csv(run["res"] / "reportgen" / "triage_predictions.csv", dtype={"study_id": str})
    triage = triage[
        (triage["model"] == run["generator"]) & (triage["variant"] == "no_indication") & (triage["judge"] == "rules")
    ]
    for r in triage.to_dict("records"):
        assert recs[r["study_id"]]["triage"] == r["predicted"], r["study_id"]
    for rec in recs.values():
        validate_record(rec)
        assert (predicted["out"] / rec["study"]["study_id"] / "summary.png").stat().st_size > 10_000
        assert (predicted["out"] / rec["study"]["study_id"] / "summary.pdf").is_file()


def test_predict_attention_is_the_workflows(run, predicted):
    """The attention behind the overlays is the probe's own: equal to the workflow's attention.npz."""
    from neurovfm.probes.attention import read_attention

    recs = _records(predicted["out"])
    checked = 0
    for mod in ("ct", "mri"):
        index, data = read_attention(run["res"] / "probes" / run["encoder"] / mod / "attention.npz")
        for e in index["entries"]:
            rec = recs.get(e["study_id"])
            for a in rec["attention"] if rec else []:
                if a["series_id"] == e["series_id"] and a["window"] == e["window"]:
                    k = index["class_names"].index(a["diagnosis"])
                    key = f"{e['study_id']}/{e['series_id']}/{e['window']}"
                    att, coords = data[f"{key}/attention"].astype(float)[:, k], data[f"{key}/coords"]
                    assert list(coords[int(np.argmax(att))]) == a["token"] or np.isclose(
                        att.max(), np.sort(att)[-2], rtol=1e-2
                    )
                    checked += 1
    assert checked >= 2  # studies both kept in attention.npz (labelled positive) and predicted positive


def test_no_planted_identifier_in_any_output_unless_asked(run, predicted):
    out = predicted["out"]
    assert _grep(predicted["export"]), "the planted tokens must be in the input (positive control)"
    assert not _grep(out), _grep(out)
    excl = pd.read_csv(out / "exclusions.csv", dtype=str)
    assert {"not_dicom", "too_few_slices"} <= set(excl["reason"]), set(excl["reason"])
    short = predicted["short_id"]
    assert set(excl[excl["study_id"] == short]["reason"]) == {"too_few_slices"}
    assert f"[-] {short}: excluded (too_few_slices)" in predicted["stdout"]
    assert not (out / short).exists()
    # the positive control of the grep: with --keep-identifiers the header identifiers are written
    planted = predicted["planted"]
    folder = predicted["export"] / f"{FAMILY}_{GIVEN}_{MRN}"
    kept = predicted["tmp"] / "kept"
    _cli("predict", "--bundle", run["bundle"], "--out", kept, "--keep-identifiers", folder)
    rec = json.loads((kept / planted / "prediction.json").read_text())
    assert rec["identifiers"]["patient_id"] == MRN and rec["identifiers"]["accession_number"] == ACC
    assert _grep(kept)


# ----------------------------------------------------------------------------------------------- laterality
def test_attention_peak_side_follows_the_lesion(run):
    """On the test study with a lateralised finding: attention put on the token at the lesion's ground-truth centre
    is reported on the lesion's side; at the mirrored point (across the brain's centre), on the other side."""
    from neurovfm.ingest.deid import keyed_hash
    from neurovfm.predict.record import attention_peak, token_lps
    from neurovfm.store.index import load_index
    from neurovfm.store.reader import ShardReader

    key = b"neurovfm-demo-key-not-secret"
    shards = load_index(run["res"] / "shards" / "test" / "index.json")
    reader = ShardReader(run["res"] / "shards" / "test" / "index.json")
    checked = 0
    for path in sorted((run["res"] / "pacs_export" / "truth").glob("*.json")):
        truth = json.loads(path.read_text())
        sid = keyed_hash(truth["study_instance_uid"], key, "study")
        lateral = [f for f in truth["findings"] if f.get("side") in ("left", "right") and f.get("center_lps")]
        vols = [v for v in shards["volumes"] if v["study_id"] == sid]
        if not lateral or not vols:
            continue
        f, v = lateral[0], vols[0]
        i = reader.position(v["series_id"])
        mask = reader.token_mask(i)
        coords = np.argwhere(mask)
        lps = token_lps(coords, v, shards["patch"], shards["spacing_mm"])
        centre = lps.mean(axis=0)
        for target, side in (
            (np.asarray(f["center_lps"]), f["side"]),
            (
                np.r_[2 * centre[0] - f["center_lps"][0], f["center_lps"][1:]],
                {"left": "right", "right": "left"}[f["side"]],
            ),
        ):
            if abs(target[0] - centre[0]) < 0.5 * shards["patch"][2] * shards["spacing_mm"][2] + 1.0:
                continue
            att = np.full((len(coords), 1), 1e-4, dtype=np.float32)
            att[np.argmin(np.linalg.norm(lps - target, axis=1)), 0] = 1.0
            index = {
                "class_names": ["lesion"],
                "entries": [{"study_id": sid, "series_id": v["series_id"], "window": "w", "grid": list(mask.shape)}],
            }
            data = {f"{sid}/{v['series_id']}/w/attention": att, f"{sid}/{v['series_id']}/w/coords": coords}
            assert attention_peak(index, data, 0, shards, sid)["side"] == side, (sid, f)
            checked += 1
    assert checked >= 2


def test_predict_on_a_nifti_file(run, tmp_path):
    """A test MR series written as NIfTI (RAS affine from ingest's LPS affine) goes through the NIfTI ingest."""
    import nibabel as nib

    from neurovfm.predict.record import validate_record

    series = pd.read_csv(run["res"] / "ingest" / "series.csv", dtype=str)
    files = pd.read_csv(run["priv"] / "files.csv", dtype=str)
    row = series[(series["split"] == "test") & (series["modality"] == "MR")].iloc[0]
    paths = files[files["series_id"] == row["series_id"]].sort_values("slice_index", key=lambda s: s.astype(int))
    export = run["res"] / "pacs_export" / "dicom"
    stack = np.stack([pydicom.dcmread(export / p).pixel_array.astype(np.float32) for p in paths["path"]])
    lps = np.array(json.loads(row["affine_lps"])).reshape(4, 4)
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    nib.save(nib.Nifti1Image(stack.transpose(2, 1, 0), ras), tmp_path / f"{FAMILY}_{MRN}.nii.gz")
    out = tmp_path / "out"
    res = _cli(
        "predict",
        "--bundle",
        run["bundle"],
        "--out",
        out,
        "--modality",
        "MR",
        "--sequence",
        row["sequence"],
        tmp_path / f"{FAMILY}_{MRN}.nii.gz",
    )
    recs = _records(out)
    assert len(recs) == 1 and res.stdout.count("[1]") == 1
    rec = next(iter(recs.values()))
    validate_record(rec)
    assert rec["study"]["modality"] == "MR" and rec["diagnoses"]
    assert not _grep(out)
    missing = _cli("predict", "--bundle", run["bundle"], "--out", out, tmp_path / f"{FAMILY}_{MRN}.nii.gz", check=False)
    assert missing.returncode == 2 and "--modality" in missing.stderr and "Traceback" not in missing.stderr


def test_an_indication_gives_the_workflows_indication_answer_and_is_never_written(run, tmp_path):
    """``--indication``: the generator's prompt of the workflow's ``indication`` variant (same answer and triage for
    the same study and indication), the record says one was given, and its text is in no output."""
    from neurovfm.predict.record import validate_record

    reports = {r["study_id"]: r for r in map(json.loads, (run["priv"] / "reports.jsonl").open())}
    gens = [json.loads(ln) for ln in (run["res"] / "reportgen" / run["generator"] / "generations.jsonl").open()]
    with_ind = {g["study_id"]: g for g in gens if g["variant"] == "indication"}
    sid = next(s for s in sorted(with_ind) if (reports.get(s, {}).get("indication") or "").strip())
    indication = reports[sid]["indication"].strip()
    _copy_study(run, sid, tmp_path / "in", plant=False)
    out = tmp_path / "out"
    _cli("predict", "--bundle", run["bundle"], "--out", out, "--indication", indication, tmp_path / "in")
    rec = json.loads((out / sid / "prediction.json").read_text())
    validate_record(rec)
    assert rec["generated"]["indication_given"] is True
    assert rec["generated"]["raw"] == with_ind[sid]["raw"]
    triage = pd.read_csv(run["res"] / "reportgen" / "triage_predictions.csv", dtype={"study_id": str})
    row = triage[
        (triage["model"] == run["generator"])
        & (triage["variant"] == "indication")
        & (triage["judge"] == "rules")
        & (triage["study_id"] == sid)
    ]
    if len(row):  # studies of the balanced triage set only
        assert rec["triage"] == row["predicted"].iloc[0]
    needle = indication.lower().encode()
    for path in out.rglob("*"):
        if path.is_file():
            assert needle not in path.read_bytes().lower(), path
