"""The diagnostic analyses' glue on workflow-shaped files (predictions.csv, label tables, studies.csv) against
naive references: Platt + F1 by direct likelihood maximisation and sklearn, subgroup AUROCs by sklearn on the
subgroup's rows, and the figures (including the not-evaluable case)."""

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from sklearn.metrics import f1_score, roc_auc_score

from neurovfm.analysis import diagnostic as D
from neurovfm.config import default_config
from neurovfm.plots import diagnostic_analyses as plots

NAMES = ["c0", "c1", "c2", "c3", "c4", "c5"]
N_TRAIN = [40, 60, 90, 150, 250, 400]


def _write(tmp_path, encoders=("good", "weak")):
    rng = np.random.default_rng(0)
    labels, preds = {}, {}
    for mod in ("ct", "mri"):
        rows = []
        for split, n in (("train", 400), ("val", 120), ("test", 120)):
            for i in range(n):
                y = {
                    c: int(i < N_TRAIN[j]) if split == "train" else int(rng.random() < 0.3) for j, c in enumerate(NAMES)
                }
                rows.append({"study_id": f"{mod}-{split}-{i}", "split": split, **y})
        lab = pd.DataFrame(rows)
        labels[mod] = tmp_path / f"{mod}.csv"
        lab.to_csv(labels[mod], index=False)
        ev = lab[lab["split"] != "train"].reset_index(drop=True)
        for k, enc in enumerate(encoders):
            out = {"study_id": ev["study_id"], "split": ev["split"]}
            for j, c in enumerate(NAMES):
                strength = (0.5 + 0.4 * j) / (1 + k)
                logit = strength * (2 * ev[c] - 1) * 2 + rng.normal(size=len(ev))
                out[f"label:{c}"], out[f"logit:{c}"] = ev[c], logit
                out[f"prob:{c}"], out[f"pred:{c}"] = 1 / (1 + np.exp(-logit)), (logit > 0).astype(int)
            path = tmp_path / f"pred_{enc}_{mod}.csv"
            pd.DataFrame(out).to_csv(path, index=False)
            preds[(enc, mod)] = path
    return labels, preds


def _naive_platt_f1(vs, vy, ts, ty):
    n_pos, n_neg = vy.sum(), (1 - vy).sum()
    t = np.where(vy == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def nll(p):
        z = p[0] * vs + p[1]
        return np.sum(np.logaddexp(0, z) - t * z)

    a, b = minimize(nll, [1.0, 0.0], method="BFGS").x
    return f1_score(ty, 1 / (1 + np.exp(-(a * ts + b))) >= 0.5)


def test_label_efficiency_against_naive_platt_and_f1(tmp_path):
    labels, preds = _write(tmp_path)
    cfg = default_config(
        analysis={
            "n_boot": 200,
            "label_efficiency": {"min_train_pos": 50, "min_test_pos": 10, "reference_encoder": "good"},
        }
    )
    table, models = D.label_efficiency(cfg, ["good", "weak"], preds, labels)
    assert len(table) == 2 * 2 * len(NAMES)
    row = table[(table["encoder"] == "weak") & (table["modality"] == "MR") & (table["label"] == "c3")].iloc[0]
    p = pd.read_csv(preds[("weak", "mri")])
    v, t = p[p["split"] == "val"], p[p["split"] == "test"]
    ref = _naive_platt_f1(
        v["logit:c3"].to_numpy(), v["label:c3"].to_numpy(), t["logit:c3"].to_numpy(), t["label:c3"].to_numpy()
    )
    assert row["f1"] == pytest.approx(ref, abs=1e-3)
    assert row["n_train_pos"] == N_TRAIN[3]
    # c0 has 40 training positives < 50: excluded and said why
    c0 = table[table["label"] == "c0"]
    assert (~c0["included"]).all() and c0["reason"].str.contains("few_train_positives").all()
    fold = models[models["section"] == "label_equivalence"].iloc[0]
    assert fold["status"] == "ok" and fold["encoder"] == "weak" and fold["ci_lo"] <= fold["coef"] <= fold["ci_hi"]
    assert {"scaling", "line", "ancova", "ancova_line"} <= set(models["section"])
    plots.fig2e(_csv(tmp_path, "le", table), _csv(tmp_path, "lem", models), ["good", "weak"], tmp_path / "fig2e.png")
    assert (tmp_path / "fig2e.pdf").exists()


def _csv(tmp_path, name, df):
    path = tmp_path / f"{name}.csv"
    df.to_csv(path, index=False)
    return path


def test_label_efficiency_degrades_to_not_evaluable(tmp_path):
    labels, preds = _write(tmp_path, encoders=("good",))
    cfg = default_config(analysis={"n_boot": 50, "label_efficiency": {"min_train_pos": 10_000, "min_test_pos": 1}})
    table, models = D.label_efficiency(cfg, ["good"], preds, labels)
    assert not table["included"].any()
    assert (models["status"] == "not_evaluable").all()
    plots.fig2e(_csv(tmp_path, "le", table), _csv(tmp_path, "lem", models), ["good"], tmp_path / "fig2e.png")
    assert (tmp_path / "fig2e.png").exists()


def test_subgroups_align_metadata_with_predictions(tmp_path):
    labels, preds = _write(tmp_path, encoders=("good",))
    rng = np.random.default_rng(3)
    ids = pd.concat(pd.read_csv(preds[("good", m)])["study_id"] for m in ("ct", "mri"))
    meta = pd.DataFrame({"study_id": ids.sample(frac=1, random_state=0).to_numpy()})  # shuffled order
    meta["manufacturer"] = rng.choice(["GE", "Siemens"], size=len(meta))
    meta["site"] = rng.choice(["A", "B", "C", "D"], size=len(meta))
    meta["field_strength"], meta["age"], meta["sex"], meta["ethnicity"] = np.nan, 50.0, "F", "x"
    studies = _csv(tmp_path, "studies", meta)
    cfg = default_config(analysis={"n_boot": 100})
    cells, means = D.subgroups(cfg, ["good"], preds, studies)
    cell = cells[
        (cells["modality"] == "CT")
        & (cells["label"] == "c4")
        & (cells["variable"] == "manufacturer")
        & (cells["level"] == "GE")
    ].iloc[0]
    p = pd.read_csv(preds[("good", "ct")])
    t = p[p["split"] == "test"].merge(meta, on="study_id")
    g = t[t["manufacturer"] == "GE"]
    assert cell["auroc_group"] == pytest.approx(roc_auc_score(g["label:c4"], g["logit:c4"]))
    assert cell["auroc_all"] == pytest.approx(roc_auc_score(t["label:c4"], t["logit:c4"]))
    assert set(cells.loc[cells["variable"] == "site", "level"]) <= {"A", "B", "C", "D"}
    site = cells[cells["variable"] == "site"]
    assert (site.groupby("modality")["level"].nunique() == 3).all()  # max_levels: site 3
    plots.ed_subgroups(_csv(tmp_path, "sub", cells), "good", 0.05, tmp_path / "ed_subgroups.png")
    assert (tmp_path / "ed_subgroups.csv").exists()


def test_cross_modal_scores_the_source_probe_on_the_target_bags(tmp_path):
    """Transferred AUROC equals sklearn's on the source probe's logits computed by hand on the target bags."""
    import torch

    from neurovfm.features.store import ChunkWriter, write_index
    from neurovfm.labels.ontology import load_ontology
    from neurovfm.models.probes import build_probe
    from neurovfm.probes.checkpoint import save_probe

    dim, rng = 8, np.random.default_rng(5)
    cfg = default_config(analysis={"n_boot": 100, "cross_modal": {"min_pos": 3}})
    pairs = cfg["analysis"]["cross_modal"]["pairs"]
    onto = {m: load_ontology(m).names for m in ("CT", "MR")}
    bags = {}
    for mod, key in (("CT", "ct"), ("MR", "mri")):
        lab = pd.DataFrame({"study_id": [f"{key}{i}" for i in range(30)], "split": "test"})
        for c in onto[mod]:
            lab[c] = (rng.random(30) < 0.4).astype(int)
        lab.to_csv(tmp_path / f"{key}.csv", index=False)
        folder = tmp_path / "features" / "toy" / "test"
        folder.mkdir(parents=True, exist_ok=True)
        bags[key] = {sid: rng.normal(size=(int(rng.integers(3, 9)), dim)).astype(np.float16) for sid in lab["study_id"]}
        probe = build_probe(cfg["probes"]["kind"], dim, len(onto[mod]), hidden=4, attn_hidden=4)
        probe_dir = tmp_path / "probes" / "toy" / key
        save_probe(
            probe_dir / "probe.pt",
            probe,
            {
                "kind": cfg["probes"]["kind"],
                "dim": dim,
                "class_names": onto[mod],
                "hidden": 4,
                "attn_hidden": 4,
                "hparams": {"dropout": 0.0},
                "ct_windows": ["brain"],
            },
        )
        native = {f"logit:{c}": rng.normal(size=30) for c in onto[mod]}
        pd.DataFrame(
            {"study_id": lab["study_id"], "split": "test", **{f"label:{c}": lab[c] for c in onto[mod]}, **native}
        ).to_csv(probe_dir / "predictions.csv", index=False)
    with ChunkWriter(folder, 0, dim, "fp") as w:
        for key, mod in (("ct", "CT"), ("mri", "MR")):
            for sid, f in bags[key].items():
                w.add(
                    {
                        "series_id": sid,
                        "study_id": sid,
                        "modality": mod,
                        "sequence": "x",
                        "window": "brain" if mod == "CT" else "mri",
                        "grid": [1, 1, 1],
                    },
                    f,
                    np.zeros((len(f), 3), np.int64),
                )
    write_index(
        folder,
        {
            "split": "test",
            "encoder": "toy",
            "model": {},
            "weights_sha256": "0",
            "dim": dim,
            "patch": [4, 16, 16],
            "normalisation": {},
        },
        [w.sidecar()],
    )
    labels = {m: tmp_path / f"{m}.csv" for m in ("ct", "mri")}
    table = D.cross_modal(cfg, ["toy"], tmp_path / "probes", tmp_path / "features", labels)
    assert len(table) == 2 * len(pairs)
    from neurovfm.probes.checkpoint import load_probe

    model, meta = load_probe(tmp_path / "probes" / "toy" / "ct" / "probe.pt")
    ct_name, mr_name = next(iter(pairs.items()))
    j = meta["class_names"].index(ct_name)
    lab = pd.read_csv(labels["mri"])
    with torch.no_grad():
        logits = [
            model(
                torch.from_numpy(bags["mri"][s].astype(np.float32)),
                torch.tensor([0, len(bags["mri"][s])], dtype=torch.int32),
            )[0][0, j]
            for s in lab["study_id"]
        ]
    row = table[(table["source"] == "CT") & (table["label"] == mr_name)].iloc[0]
    assert row["auroc_transferred"] == pytest.approx(roc_auc_score(lab[mr_name], np.array(logits)), abs=1e-6)
    assert row["verdict"] in {"equivalent", "inferior", "superior", "inconclusive"}
    plots.fig3c(_csv(tmp_path, "cm", table), "toy", tmp_path / "fig3c.png")
