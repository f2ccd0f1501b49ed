"""Study-level probes end to end on a feature store with a planted signal: learning, validation-only choices,
test isolation, tables against scikit-learn, attention normalisation across a study's volumes, figures."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from neurovfm.config import default_config
from neurovfm.eval.thresholds import select_thresholds
from neurovfm.features.store import ChunkWriter, FeatureReader, write_index
from neurovfm.labels.ontology import load_ontology
from neurovfm.probes.attention import read_attention, study_attention
from neurovfm.probes.bags import BagSet, read_label_table
from neurovfm.probes.checkpoint import load_probe
from neurovfm.probes.evaluate import diagnosis_tables, encoder_difference
from neurovfm.probes.predictions import read_predictions, sigmoid, split_arrays
from neurovfm.probes.run import run_probe
from neurovfm.probes.train import class_pos_weight, grid_candidates

DIM = 16
SIGNAL = (0, 1, 2)  # the ontology classes that carry a planted token signal


def _labels(n_per_split: dict, seed: int, names: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in n_per_split.items():
        for i in range(n):
            y = np.zeros(len(names), dtype=int)
            for k in SIGNAL:
                y[k] = int(rng.random() < 0.4)
            rows.append({"study_id": f"{split}{i:03d}", "split": split, **dict(zip(names, y))})
    return pd.DataFrame(rows)


def _write_split(folder, labels: pd.DataFrame, split: str, names: list[str], seed: int, noise_only=False, drop=()):
    """One feature split: each study two volumes (CT: brain + blood windows); a positive study of class k has a
    few tokens shifted along dimension k (in one of its volumes)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with ChunkWriter(folder, 0, DIM, "fp") as w:
        for _, row in labels[labels["split"] == split].iterrows():
            if row["study_id"] in drop:
                continue
            for v in range(2):
                for window in ("brain", "blood"):
                    n = int(rng.integers(10, 20))
                    feats = rng.normal(size=(n, DIM)).astype(np.float32)
                    if not noise_only and v == 1 and window == "blood":
                        for k in SIGNAL:
                            if row[names[k]]:
                                feats[:4, k] += 5.0
                    coords = np.stack(np.unravel_index(np.arange(n), (4, 4, 4)), axis=1)
                    w.add(
                        {
                            "series_id": f"{row['study_id']}-s{v}",
                            "study_id": row["study_id"],
                            "modality": "CT",
                            "sequence": "ct",
                            "window": window,
                            "grid": [4, 4, 4],
                        },
                        feats,
                        coords,
                    )
    write_index(
        folder,
        {
            "split": split,
            "encoder": "toy",
            "model": {},
            "weights_sha256": "0",
            "dim": DIM,
            "patch": [4, 16, 16],
            "normalisation": {},
        },
        [w.sidecar()],
    )


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("probes")
    names = load_ontology("CT").names
    labels = _labels({"train": 48, "val": 24, "test": 24}, 0, names)
    labels_csv = tmp_path / "ct.csv"
    labels.to_csv(labels_csv, index=False)
    feat = tmp_path / "features" / "toy"
    for s, split in enumerate(("train", "val", "test")):
        _write_split(feat / split, labels, split, names, seed=10 + s, drop={"train047"} if split == "train" else ())
    cfg = default_config(
        probes={
            "epochs": 20,
            "batch_size": 8,
            "hidden": 16,
            "attn_hidden": 16,
            "selection": "validation",
            "grid": {"lr": [3e-3, 1e-2], "weight_decay": [0.0], "dropout": [0.0]},
            "progress_every_s": 1000,
            "min_val_pos": 2,
            "attention": {"max_studies": 4},
            "eval": {"n_boot": 200, "min_pos": 3},
        }
    )
    return {"cfg": cfg, "names": names, "labels": labels, "labels_csv": labels_csv, "feat": feat, "tmp": tmp_path}


def _run(toy, out_name="probe", feat=None, labels_csv=None):
    out = toy["tmp"] / out_name
    if out_name == "probe" and (out / "summary.json").exists():  # one fit shared by the read-only tests
        return out, json.loads((out / "summary.json").read_text())
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # bitwise-equal refits need a fixed reduction order (see test of test isolation)
    try:
        summary = run_probe(toy["cfg"], "toy", "ct", feat or toy["feat"], labels_csv or toy["labels_csv"], out)
    finally:
        torch.set_num_threads(n)
    (out / "summary.json").write_text(json.dumps(summary))
    return out, summary


def test_bags_match_labels_and_record_studies_without_features(toy):
    labels, names = read_label_table(toy["labels_csv"], "CT")
    bags = BagSet(FeatureReader(toy["feat"] / "train" / "index.json"), labels, names, "train", "CT", windows=("brain",))
    assert bags.missing == ["train047"]
    assert len(bags) == 47
    # brain window only: two volumes per study
    assert all(len(e) == 2 for e in bags.entries)
    tokens, cu = bags.pack([0, 1])
    assert tokens.shape[0] == int(cu[-1]) == int(bags.n_tokens[0] + bags.n_tokens[1])


@pytest.mark.parametrize("cache", [False, True])
def test_non_finite_features_are_refused_naming_the_study(toy, tmp_path, cache):
    """A NaN token stops packing with the study's id, whether bags are checked per pack or once when cached (and
    through a cross-validation subset of cached sets); finite studies pack as before."""
    from neurovfm.probes.attentive_cv import StudySubset

    labels = toy["labels"]
    feat = tmp_path / "nan"
    _write_split(feat, labels, "val", toy["names"], seed=11)
    reader = FeatureReader(feat / "index.json")
    table, names = read_label_table(toy["labels_csv"], "CT")
    bags = BagSet(reader, table, names, "val", "CT", cache=cache)
    bad = bags.study_ids.index("val003")
    first = bags.entries[bad][0]
    original = reader.features

    def poisoned(entry):
        out = np.array(original(entry), dtype=np.float32)
        if entry == first:
            out[2, 1] = np.nan
        return out

    reader.features = poisoned
    tokens, _ = bags.pack([0, 1])
    assert torch.isfinite(tokens).all()
    sets = [bags, StudySubset([bags], [(0, i) for i in range(len(bags))])]
    for bagset in sets:
        with pytest.raises(ValueError, match=r"non-finite features in studies \['val003'\]"):
            bagset.pack([0, bad])
    assert sets[1].checked_on_read is cache


def test_label_table_must_follow_the_ontology(tmp_path, toy):
    df = toy["labels"]
    cols = ["study_id", "split", *reversed(toy["names"])]
    df[cols].to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="ontology"):
        read_label_table(tmp_path / "bad.csv", "CT")


def test_pos_weight_and_grid():
    y = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]])
    np.testing.assert_allclose(class_pos_weight(y), [3.0, 1.0, 1 / 3])
    np.testing.assert_allclose(class_pos_weight(y, max_weight=2.0), [2.0, 1.0, 1 / 3])
    assert len(grid_candidates({"lr": [1, 2], "dropout": [0.0, 0.1, 0.2]})) == 6
    with pytest.raises(ValueError, match="not tunable"):
        grid_candidates({"momentum": [0.9]})


def test_probe_learns_planted_signal_and_keeps_test_out(toy, tmp_path):
    out, summary = _run(toy)
    preds, names = read_predictions(out / "predictions.csv")
    assert set(preds["split"]) == {"val", "test"}
    scores, labels = split_arrays(preds, names, "test")
    for k in SIGNAL:
        assert roc_auc_score(labels[:, k], scores[:, k]) > 0.8, names[k]
    # thresholds are the Youden thresholds of the validation probabilities, nothing else
    v_scores, v_labels = split_arrays(preds, names, "val")
    thr = pd.read_csv(out / "thresholds.csv")["threshold"].to_numpy()
    np.testing.assert_allclose(thr, select_thresholds(v_scores, v_labels), equal_nan=True)
    sel = pd.read_csv(out / "selection.csv")
    assert sel["chosen"].sum() == 1 and len(sel) == 2
    assert pd.read_csv(out / "unmatched.csv")["study_id"].tolist() == ["train047"]
    model, meta = load_probe(out / "probe.pt")
    assert meta["class_names"] == names and meta["best_epoch"] == summary["best_epoch"]

    # the same run with other test labels and other test features: identical probe, thresholds, validation output
    # (multi-threaded BLAS may split sums differently when the machine is busy: both fits run on one thread)
    labels2 = toy["labels"].copy()
    test = labels2["split"] == "test"
    labels2.loc[test, names] = 1 - labels2.loc[test, names].to_numpy()
    labels2.to_csv(tmp_path / "ct.csv", index=False)
    feat2 = tmp_path / "features"
    shutil.copytree(toy["feat"], feat2)
    _write_split(feat2 / "test", labels2, "test", names, seed=99, noise_only=True)
    out2, _ = _run(toy, "probe2", feat=feat2, labels_csv=tmp_path / "ct.csv")
    a, b = torch.load(out / "probe.pt", weights_only=False), torch.load(out2 / "probe.pt", weights_only=False)
    differ = [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], b["state_dict"][k])]
    assert not differ, (differ, a["best_epoch"], b["best_epoch"], a["hparams"], b["hparams"])
    np.testing.assert_array_equal(a["thresholds"], b["thresholds"])
    p2, _ = read_predictions(out2 / "predictions.csv")
    pd.testing.assert_frame_equal(
        preds[preds["split"] == "val"].reset_index(drop=True), p2[p2["split"] == "val"].reset_index(drop=True)
    )
    assert (
        not preds[preds["split"] == "test"]
        .reset_index(drop=True)
        .equals(p2[p2["split"] == "test"].reset_index(drop=True))
    )


def test_attention_sums_to_one_over_the_whole_study(toy):
    out, _ = _run(toy)
    model, _ = load_probe(out / "probe.pt")
    labels, names = read_label_table(toy["labels_csv"], "CT")
    bags = BagSet(FeatureReader(toy["feat"] / "test" / "index.json"), labels, names, "test", "CT")
    parts = study_attention(model, bags, 0)
    assert len(parts) == 4  # 2 volumes x 2 windows
    total = sum(p["attention"].sum(axis=0) for p in parts)
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
    index, data = read_attention(out / "attention.npz")
    assert index["class_names"] == names
    assert 0 < len({e["study_id"] for e in index["entries"]}) <= 4
    e = index["entries"][0]
    key = f"{e['study_id']}/{e['series_id']}/{e['window']}"
    assert data[f"{key}/attention"].shape[0] == data[f"{key}/coords"].shape[0]


def test_tables_match_sklearn_and_report_rare_classes(toy):
    out, _ = _run(toy)
    per_class, cats = diagnosis_tables(
        out / "predictions.csv", out / "thresholds.csv", "ct", n_boot=300, seed=1, min_pos=3
    )
    preds, names = read_predictions(out / "predictions.csv")
    scores, labels = split_arrays(preds, names, "test")
    assert len(per_class) == len(names) == 82
    ok = per_class["status"] == "ok"
    assert set(np.flatnonzero(ok)) == set(SIGNAL)
    for k in SIGNAL:
        assert per_class.loc[k, "auroc"] == pytest.approx(roc_auc_score(labels[:, k], scores[:, k]))
        assert per_class.loc[k, "auroc_lo"] <= per_class.loc[k, "auroc"] <= per_class.loc[k, "auroc_hi"]
    assert per_class.loc[~ok, "auroc"].isna().all() and (per_class.loc[~ok, "status"] != "ok").all()
    all_row = cats[cats["category"] == "all"].iloc[0]
    assert all_row["n_classes"] == len(SIGNAL) and all_row["n_excluded"] == 82 - len(SIGNAL)
    assert all_row["auroc"] == pytest.approx(per_class.loc[ok, "auroc"].mean())


def test_encoder_difference_is_paired_on_the_same_studies(toy, tmp_path):
    out, _ = _run(toy)
    preds, names = read_predictions(out / "predictions.csv")
    worse = preds.copy()
    rng = np.random.default_rng(0)
    worse[[f"prob:{c}" for c in names]] = sigmoid(rng.normal(size=(len(worse), len(names))))
    worse.to_csv(tmp_path / "worse.csv", index=False)
    table = encoder_difference(
        out / "predictions.csv", tmp_path / "worse.csv", "toy", "noise", n_boot=300, seed=2, min_pos=3
    )
    top = table.iloc[0]
    assert top["label"] == "all" and top["n_classes"] == len(SIGNAL)
    assert top["delta"] == pytest.approx(table.iloc[1:].query("status == 'ok'")["delta"].mean())
    assert top["delta_lo"] > 0  # planted signal against noise: clearly better
    worse[worse["study_id"] != worse["study_id"].iloc[-1]].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(ValueError, match="test studies differ"):
        encoder_difference(
            out / "predictions.csv", tmp_path / "short.csv", "toy", "noise", n_boot=10, seed=0, min_pos=3
        )


def test_diagnosis_figures(toy, tmp_path):
    from neurovfm.plots.diagnosis import fig2a, fig2c

    out, _ = _run(toy)
    cats, classes = {}, {}
    for mod in ("ct", "mri"):  # the toy CT probe stands in for both panels
        per_class, cat = diagnosis_tables(
            out / "predictions.csv", out / "thresholds.csv", "ct", n_boot=100, seed=0, min_pos=3
        )
        per_class.to_csv(tmp_path / f"{mod}.csv", index=False)
        cat.to_csv(tmp_path / f"{mod}_cat.csv", index=False)
        cats[("toy", mod)], classes[("toy", mod)] = tmp_path / f"{mod}_cat.csv", tmp_path / f"{mod}.csv"
    t = fig2a(cats, classes, ["toy"], tmp_path / "fig2a.png")
    assert (tmp_path / "fig2a.pdf").is_file() and len(t) == 2
    t = fig2c(cats, ["toy"], tmp_path / "fig2c.png")
    assert (tmp_path / "fig2c.csv").is_file() and set(t["modality"]) == {"ct", "mri"}


def test_attentive_cv_pools_train_and_val_and_finds_the_planted_signal(toy):
    from neurovfm.probes.attentive_cv import StudySubset, cv_histories, mean_curves, pooled_items
    from neurovfm.probes.bags import load_bagsets

    labels, names = read_label_table(toy["labels_csv"], "CT")
    sets = load_bagsets(toy["feat"], labels, names, "CT", splits=("train", "val"))
    bagsets = [sets["train"], sets["val"]]
    pool = StudySubset(bagsets, pooled_items(bagsets))
    assert len(pool) == 47 + 24 and pool.study_ids == sets["train"].study_ids + sets["val"].study_ids
    np.testing.assert_array_equal(pool.labels, np.concatenate([sets["train"].labels, sets["val"].labels]))
    tokens, cu = pool.pack([0, 47])
    expected = np.concatenate([sets["train"].bag(0), sets["val"].bag(0)]).astype(np.float32)
    np.testing.assert_array_equal(tokens.numpy(), expected)
    assert int(cu[-1]) == len(expected) and pool.dim == DIM
    settings = {**toy["cfg"]["probes"], "epochs": 6, "grid": {"lr": [1e-2], "weight_decay": [0.0], "dropout": [0.0]}}
    hist = cv_histories(bagsets, settings, seed=0, n_folds=3)
    assert len(hist) == 3 * 6 and set(hist["fold"]) == {0, 1, 2}
    curves = mean_curves(hist)
    assert curves["held_mean_auroc"].iloc[0] == curves["held_mean_auroc"].max() > 0.8
    with pytest.raises(ValueError, match="nothing to stratify"):
        cv_histories(bagsets, settings, seed=0, min_pos=10_000)


def test_cross_validated_selection_keeps_the_chosen_epoch_of_a_train_only_fit(toy):
    from neurovfm.probes.attentive_cv import cv_histories, mean_curves
    from neurovfm.probes.bags import load_bagsets
    from neurovfm.probes.train import select_probe

    labels, names = read_label_table(toy["labels_csv"], "CT")
    sets = load_bagsets(toy["feat"], labels, names, "CT", splits=("train", "val"))
    settings = {
        **toy["cfg"]["probes"],
        "epochs": 5,
        "selection": "cv",
        "cv_folds": 3,
        "grid": {"lr": [3e-3, 1e-2], "weight_decay": [0.0], "dropout": [0.0]},
    }
    fit, rows, history = select_probe(sets["train"], sets["val"], settings, seed=0)
    top = mean_curves(cv_histories([sets["train"], sets["val"]], settings, 0, n_folds=3)).iloc[0]
    chosen = [r for r in rows if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["candidate"] == int(top["candidate"])
    assert fit.best_epoch == int(top["epoch"]) == chosen[0]["best_epoch"]
    final = [h for h in history if h["phase"] == "final"]
    # the train-only fit stops at the chosen epoch; the folds run every epoch
    assert len(final) == fit.best_epoch and len([h for h in history if h["phase"] == "cv"]) == 2 * 3 * 5
    assert fit.val_auroc == final[fit.best_epoch - 1]["val_mean_auroc"]  # the kept weights are that epoch's
    assert fit.val_auroc > 0.8
    with pytest.raises(ValueError, match="selection"):
        select_probe(sets["train"], sets["val"], {**settings, "selection": "test"}, seed=0)


def test_fixed_selection_keeps_the_set_epoch_of_one_train_only_fit(toy):
    """selection: fixed fits the single candidate once and keeps the weights after fixed_epoch: the same weights as a
    fit told to keep that epoch, with nothing chosen on held-out data; a grid with a choice in it or an epoch beyond
    the schedule is refused."""
    from neurovfm.probes.bags import load_bagsets
    from neurovfm.probes.train import fit_probe, select_probe

    labels, names = read_label_table(toy["labels_csv"], "CT")
    sets = load_bagsets(toy["feat"], labels, names, "CT", splits=("train", "val"))
    hp = {"lr": 1e-2, "weight_decay": 0.0, "dropout": 0.0}
    settings = {
        **toy["cfg"]["probes"],
        "epochs": 6,
        "selection": "fixed",
        "fixed_epoch": 4,
        "grid": {k: [v] for k, v in hp.items()},
    }
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit, rows, history = select_probe(sets["train"], sets["val"], settings, seed=0)
        ref = fit_probe(sets["train"], sets["val"], settings, hp, seed=0, keep_epoch=4)
    finally:
        torch.set_num_threads(n)
    assert fit.best_epoch == 4 and [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert {h["phase"] for h in history} == {"final"}
    assert len(rows) == 1 and rows[0]["chosen"] and rows[0]["best_epoch"] == 4
    assert rows[0]["val_mean_auroc"] == fit.val_auroc == history[3]["val_mean_auroc"]
    for key, value in ref.model.state_dict().items():
        assert torch.equal(value, fit.model.state_dict()[key]), key
    assert fit.val_auroc > 0.8  # it learned: the toy classes are separable
    with pytest.raises(ValueError, match="one candidate"):
        select_probe(sets["train"], sets["val"], {**settings, "grid": {**settings["grid"], "lr": [1e-3, 1e-2]}}, 0)
    for bad in (None, 0, 7):
        with pytest.raises(ValueError, match="fixed_epoch"):
            select_probe(sets["train"], sets["val"], {**settings, "fixed_epoch": bad}, seed=0)


def test_the_schema_wants_an_epoch_for_fixed_selection():
    from neurovfm.config import ConfigError, load_config, validate

    cfg = load_config()
    cfg["probes"].update(selection="fixed", fixed_epoch=None)
    with pytest.raises(ConfigError, match="fixed_epoch"):
        validate(cfg)
    cfg["probes"].update(selection="cv")  # cv and validation do not read it
    validate(cfg)
    cfg["probes"].update(selection="fixed", fixed_epoch=0)
    with pytest.raises(ConfigError, match="fixed_epoch"):
        validate(cfg)
    cfg["probes"].update(fixed_epoch=cfg["probes"]["epochs"] + 1)
    with pytest.raises(ConfigError, match="beyond probes.epochs"):
        validate(cfg)
    cfg["probes"].update(fixed_epoch=cfg["probes"]["epochs"])
    validate(cfg)


def test_a_fit_stopped_at_its_kept_epoch_follows_the_full_schedule(toy):
    """Stopping the final fit at the chosen epoch saves time only: up to it, learning rates and losses equal those
    of a fit that runs every epoch (the schedule is laid out over all epochs either way)."""
    from neurovfm.probes.bags import load_bagsets
    from neurovfm.probes.train import fit_probe

    labels, names = read_label_table(toy["labels_csv"], "CT")
    sets = load_bagsets(toy["feat"], labels, names, "CT", splits=("train", "val"))
    settings = {**toy["cfg"]["probes"], "epochs": 6}
    hp = {"lr": 1e-2, "weight_decay": 0.0, "dropout": 0.0}
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        short = fit_probe(sets["train"], sets["val"], settings, hp, seed=0, keep_epoch=3)
        full = fit_probe(sets["train"], sets["val"], settings, hp, seed=0, keep_epoch=6)
    finally:
        torch.set_num_threads(n)
    assert [h["epoch"] for h in short.history] == [1, 2, 3] and len(full.history) == 6
    assert short.history == full.history[:3]
    assert short.best_epoch == 3 and short.val_auroc == full.history[2]["val_mean_auroc"]


def test_the_trained_probe_attends_to_the_planted_tokens(toy):
    """Where the model looks (Fig. 3d, `neurovfm predict`'s overlays) is where the signal is: in positive test studies
    the attention of a signal class peaks on one of the 4 planted tokens (of about 60 in the study) far more often
    than chance. (The side of a peak, given its token, is checked against the export's geometry in test_predict.)"""
    out, _ = _run(toy)
    model, _ = load_probe(out / "probe.pt")
    labels, names = read_label_table(toy["labels_csv"], "CT")
    bags = BagSet(FeatureReader(toy["feat"] / "test" / "index.json"), labels, names, "test", "CT")
    hits, chance = [], []
    for i in range(len(bags)):
        parts = study_attention(model, bags, i)
        for k in SIGNAL:
            if not bags.labels[i, k]:
                continue
            top = max(parts, key=lambda p: p["attention"][:, k].max())
            j = int(np.argmax(top["attention"][:, k]))
            hits.append(top["series_id"].endswith("-s1") and top["window"] == "blood" and j < 4)
            chance.append(4 / sum(len(p["attention"]) for p in parts))
    assert len(hits) >= 10
    assert np.mean(hits) > 0.8 > 5 * np.mean(chance)
