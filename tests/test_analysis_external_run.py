"""External benchmark wiring on a toy feature store: every (encoder, task) row, fold probes trained only on their
fold's training subjects, the ensemble equal to the mean of the saved fold probes, regression in target units, and
a frozen transfer to a second dataset equal to applying the saved probes by hand."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from neurovfm.analysis import external_run as er
from neurovfm.config import default_config
from neurovfm.features.store import ChunkWriter, FeatureReader, write_index
from neurovfm.probes.checkpoint import load_probe
from neurovfm.probes.train import predict

DIM = 8


def _dataset(work, n_subjects, seed):
    """Studies (one or two per subject) whose tokens carry the diagnosis on dim 0 and the age on dim 1."""
    rng = np.random.default_rng(seed)
    rows, studies = [], []
    folder = work / "features" / "toy" / er.POOL
    folder.mkdir(parents=True)
    with ChunkWriter(folder, 0, DIM, "fp") as w:
        for s in range(n_subjects):
            dx, age = int(rng.random() < 0.4), float(rng.uniform(20, 90))
            for v in range(1 + int(rng.random() < 0.3)):
                sid = f"d{seed}-s{s:02d}-{v}"
                f = rng.normal(size=(12, DIM)).astype(np.float32)
                f[:, 0] += 3.0 * dx
                f[:, 1] += (age - 55.0) / 10.0
                coords = np.stack(np.unravel_index(np.arange(12), (2, 2, 3)), axis=1)
                w.add(
                    {
                        "series_id": sid + "x",
                        "study_id": sid,
                        "modality": "MR",
                        "sequence": "t1",
                        "window": "mri",
                        "grid": [2, 2, 3],
                    },
                    f,
                    coords,
                )
                rows.append({"study_id": sid, "split": er.POOL, "dx": dx, "brain_age": age})
                studies.append({"study_id": sid, "patient_id": f"p{seed}-{s}", "modality": "MR"})
    write_index(
        folder,
        {
            "split": er.POOL,
            "encoder": "toy",
            "model": {},
            "weights_sha256": "0",
            "dim": DIM,
            "patch": [4, 16, 16],
            "normalisation": {},
        },
        [w.sidecar()],
    )
    (work / "ingest").mkdir()
    pd.DataFrame(rows).to_csv(work / "ingest" / "nifti_labels.csv", index=False)
    pd.DataFrame(studies).to_csv(work / "ingest" / "studies.csv", index=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ext")
    torch.set_num_threads(1)
    tasks = {
        "diagnosis": {"type": "classification", "labels": ["dx"]},
        "brain_age": {"type": "regression", "labels": ["brain_age"]},
    }
    cfg = default_config(
        probes={"hidden": 16, "attn_hidden": 16, "batch_size": 8},
        analysis={
            "n_boot": 50,
            "external": {
                "n_folds": 3,
                "probe": {
                    "epochs": 15,
                    "grid": {"lr": [1e-2], "weight_decay": [0.0], "dropout": [0.0]},
                    "max_train_tokens": None,
                },
                "datasets": {
                    "a": {"nifti_dir": None, "csv": None, "tasks": tasks, "transfer_from": []},
                    "b": {
                        "nifti_dir": None,
                        "csv": None,
                        "tasks": {"brain_age": tasks["brain_age"]},
                        "transfer_from": [{"dataset": "a", "task": "diagnosis"}],
                    },
                },
            },
        },
    )
    _dataset(tmp / "a", 40, 1)
    _dataset(tmp / "b", 24, 2)
    ta = er.benchmark(cfg, "a", tmp / "a", ["toy"], seed=0)
    tb = er.benchmark(cfg, "b", tmp / "b", ["toy"], {("a", "diagnosis"): tmp / "a"}, seed=0)
    return cfg, tmp, ta, tb


def test_rows_and_metrics(runs):
    cfg, tmp, ta, tb = runs
    assert set(zip(ta["task"], ta["metric"])) == {
        ("diagnosis", "auroc"),
        ("diagnosis", "balanced_accuracy"),
        ("brain_age", "mae"),
        ("brain_age", "rmse"),
    }
    auc = ta[(ta["task"] == "diagnosis") & (ta["metric"] == "auroc")].iloc[0]
    assert auc["value"] > 0.8 and auc["lo"] <= auc["value"] <= auc["hi"]
    mae = ta[ta["metric"] == "mae"].iloc[0]["value"]
    assert mae < 12.0  # predicting the mean scores about 17.5 years here; the errors are in years
    assert (ta["n_subjects"] < 40).all() and (ta["trained_on"] == "a").all()


def test_fold_probes_ensemble_to_the_test_scores(runs):
    cfg, tmp, ta, _ = runs
    out = tmp / "a" / "probes" / "toy" / "brain_age"
    pred = pd.read_csv(out / "predictions.csv", dtype={"study_id": str})
    reader = FeatureReader(tmp / "a" / "features" / "toy" / er.POOL / "index.json")
    studies = er.study_table(tmp / "a")
    pos = studies.index[studies["study_id"].isin(pred["study_id"])].to_numpy()
    fp = er.FoldProbes(reader, studies, ["brain_age"], "MR", {}, 0)
    bags = fp.bags(pos, "test")
    scores = []
    for f in range(3):
        model, meta = load_probe(out / f"fold{f}.pt")
        mean, std = meta["target_scale"]
        scores.append(predict(model, bags, 10_000) * np.asarray(std) + np.asarray(mean))
    order = pd.Series(range(len(pred)), index=pred["study_id"])[bags.study_ids].to_numpy()
    assert np.allclose(np.mean(scores, axis=0)[:, 0], pred["score:brain_age"].to_numpy()[order], atol=1e-4)
    # every fold's training subjects are disjoint from the held-out test subjects
    assert not set(pred["subject"]) & set(studies.loc[~studies["study_id"].isin(pred["study_id"]), "patient_id"])


def test_frozen_transfer_rows(runs):
    cfg, tmp, _, tb = runs
    tr = tb[tb["trained_on"] == "a"]
    assert set(tr["metric"]) == {"auroc", "balanced_accuracy"} and (tr["task"] == "diagnosis").all()
    assert (tr["n_studies"] == len(er.study_table(tmp / "b"))).all()  # every study of b, nothing held out
    hp = json.loads(tr.iloc[0]["hparams"])
    assert hp == {"dropout": 0.0, "lr": 1e-2, "weight_decay": 0.0}
    assert tr[tr["metric"] == "auroc"].iloc[0]["value"] > 0.8
