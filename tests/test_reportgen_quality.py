"""Degeneration, label-level P/R/F1, the baselines (prior-only, retrieval, shuffled image) and the demo LM's
text-only stage 0; and, when the demo run has generated findings, the degeneration bound on its answers."""

import glob
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from neurovfm.reportgen import baselines as bl
from neurovfm.reportgen.quality import (
    LabelReader,
    is_repetition,
    label_scores,
    paired_f1_difference,
    paired_mean_difference,
    repetition_rate,
)

ROOT = Path(__file__).resolve().parents[1]
HEM = "Acute left parietal intraparenchymal hemorrhage."
SVD = "Chronic small vessel ischemic disease."


def _row(sid, items, modality="CT", status="ok", raw=None, model="m"):
    return {
        "model": model,
        "variant": "indication",
        "study_id": sid,
        "modality": modality,
        "status": status,
        "findings": items if status == "ok" else [],
        "raw": raw if raw is not None else json.dumps(items),
    }


def test_repetition_of_one_sentence_is_seen_in_findings_and_in_raw_text():
    assert is_repetition(_row("a", ["There is present.", "There is present.", "there is present"]))
    cut = '["There is present.", "There is present.", "There is pre'
    assert is_repetition(_row("a", [], status="malformed", raw=cut + 'sent."'))
    assert is_repetition(_row("a", ["There is present.", "There is present.", SVD]))  # mostly one sentence
    assert not is_repetition(_row("a", [HEM, SVD]))
    assert not is_repetition(_row("a", [HEM]))  # one sentence once is an answer, not a repetition
    assert not is_repetition(_row("a", []))
    assert repetition_rate([_row("a", [HEM, HEM]), _row("b", [HEM])]) == 0.5


def test_label_scores_perfect_empty_and_wrong_answers():
    refs = {"a": [HEM], "b": [SVD], "c": []}
    ev = {"n_boot": 50, "alpha": 0.05}
    copy = pd.DataFrame([_row(s, refs[s]) for s in refs])
    t = label_scores(copy, refs, {"all": set(refs)}, ev, 0)
    micro = t[t.label == "micro"].iloc[0]
    assert micro.f1 == 1.0 and micro.ci_lo == 1.0 and micro.fp == 0
    assert {"intraparenchymal_hemorrhage", "intracranial_hemorrhage"} <= set(t.label)  # parents implied
    empty = pd.DataFrame([_row(s, []) for s in refs])
    t = label_scores(empty, refs, {"all": set(refs)}, ev, 0)
    assert t[t.label == "micro"].iloc[0].f1 == 0.0
    swapped = pd.DataFrame([_row("a", [SVD]), _row("b", [HEM]), _row("c", [])])
    t = label_scores(swapped, refs, {"all": set(refs)}, ev, 0)
    row = t[(t.label == "intraparenchymal_hemorrhage")].iloc[0]
    assert row.tp == 0 and row.fp == 1 and row.fn == 1 and row.precision == 0.0


def test_paired_differences_see_a_real_gap_and_none_between_equals():
    rng = np.random.default_rng(0)
    refs = {f"s{k}": [HEM] if k % 2 else [SVD] for k in range(40)}
    good = [_row(s, f) for s, f in refs.items()]
    bad = [_row(s, [SVD]) for s in refs]
    reader = LabelReader()
    d = paired_f1_difference(good, bad, refs, 200, 0, 0.05, reader)
    assert d["micro"][0] > 0 and d["micro"][1] > 0  # the interval excludes zero
    same = paired_f1_difference(good, good, refs, 200, 0, 0.05, reader)
    assert same["micro"] == (0.0, 0.0, 0.0)
    x = rng.integers(0, 2, 60)
    assert paired_mean_difference(x, x, 100, 0, 0.05) == (0.0, 0.0, 0.0)
    lo = paired_mean_difference(np.ones(60), x, 100, 0, 0.05)[1]
    assert lo > 0
    with pytest.raises(ValueError):
        paired_f1_difference(good, bad[:-1], refs, 10, 0, 0.05, reader)


def test_prior_only_takes_the_most_frequent_findings_of_each_modality():
    findings = {
        "a": {"modality": "CT", "findings": [SVD, HEM]},
        "b": {"modality": "CT", "findings": [SVD, "Old infarct."]},
        "c": {"modality": "CT", "findings": [SVD, HEM, "Atrophy."]},
        "d": {"modality": "MR", "findings": []},
        "e": {"modality": "MR", "findings": []},
        "f": {"modality": "MR", "findings": [HEM]},
    }
    prior = bl.prior_findings(findings, list(findings))
    assert prior == {"CT": [SVD, HEM], "MR": []}  # median 2 findings on CT; most MR studies are normal
    rows = bl.prior_only(findings, list(findings), ["a", "f"])
    assert len(rows) == 4 and rows[0]["findings"] == [SVD, HEM] and rows[-1]["findings"] == []


def test_retrieval_finds_the_study_whose_features_match():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(20, 8))
    ids = [f"t{k}" for k in range(20)]
    mods = ["CT" if k % 2 == 0 else "MR" for k in range(20)]
    # control: each training study retrieves itself; a noisy copy retrieves its source within its modality
    assert bl.nearest_training_study(train, ids, mods, train, mods) == ids
    query = train[[4, 7]] + 0.01 * rng.normal(size=(2, 8))
    assert bl.nearest_training_study(train, ids, mods, query, ["CT", "MR"]) == ["t4", "t7"]
    # a query of one modality never retrieves the other modality's study, however close
    assert bl.nearest_training_study(train, ids, mods, train[[4]], ["MR"])[0] != "t4"
    # no training study of the query's modality: the nearest of any modality
    assert bl.nearest_training_study(train, ids, mods, train[[4]], ["XA"]) == ["t4"]


def test_derangement_moves_every_study_within_its_modality():
    groups = ["CT"] * 5 + ["MR"] * 4 + ["X"]
    perm = bl.derangement(groups, 3)
    assert sorted(perm) == list(range(10))
    assert all(perm[i] != i and groups[perm[i]] == groups[i] for i in range(9))
    assert perm[9] == 9


def test_text_pretraining_stage_trains_the_lm_only_and_is_skipped_for_a_local_lm(tmp_path, one_thread):
    from reportgen_fixtures import make_inputs, tiny_config
    from test_reportgen_model import _trainer

    from neurovfm.reportgen.train import text_pretraining

    paths = make_inputs(tmp_path / "in")
    cfg = tiny_config(tmp_path, lm={"text_pretrain": {"steps": 2, "lr": 1e-3, "batch_size": 4}})
    t = _trainer(cfg, paths, tmp_path / "out")
    before = {k: v.clone() for k, v in t.connector.state_dict().items()}
    lm_before = {k: v.clone() for k, v in t.model.state_dict().items()}
    params = t.setup_stage(0)
    opt = torch.optim.AdamW(params, lr=1e-3)
    t.train_stage(0, 2, 0, opt, params)
    assert [r["stage"] for r in t.rows] == [0, 0]
    for k, v in t.connector.state_dict().items():  # stage 0 never touches the connector
        torch.testing.assert_close(v, before[k], atol=0, rtol=0)
    assert any(not torch.equal(v, lm_before[k]) for k, v in t.model.state_dict().items())
    t.run()
    assert {r["stage"] for r in t.rows} == {0, 1, 2}
    assert text_pretraining(cfg["reportgen"])
    local = tiny_config(
        tmp_path, lm={"path": str(tmp_path), "text_pretrain": {"steps": 2, "lr": 1e-3, "batch_size": 4}}
    )
    assert not text_pretraining(local["reportgen"])


DEMO = sorted(glob.glob(str(ROOT / "results/demo/reportgen/*/n*/generations.jsonl")))


@pytest.mark.skipif(not DEMO, reason="the demo has no generated findings yet (snakemake ... fig4b)")
@pytest.mark.parametrize("path", DEMO)
def test_demo_answers_are_not_one_sentence_repeated(path):
    rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
    assert rows
    assert repetition_rate(rows) <= 0.05, f"{path}: {repetition_rate(rows):.1%} of answers repeat one sentence"
    # and the answers differ between studies (a constant answer is degenerate too)
    assert len({json.dumps(r["findings"]) if r["status"] == "ok" else r["raw"] for r in rows}) > 1


def test_baselines_and_label_tables_end_to_end(tmp_path, one_thread):
    """Train the tiny model, write the three baselines, triage and evaluate: every baseline is a row of the triage
    and text tables, the label table has macro / micro rows, and the differences name each baseline."""
    from reportgen_fixtures import make_inputs, tiny_config

    from neurovfm.reportgen.run import baseline_names, baselines, evaluate, generate, triage, triage_set
    from test_reportgen_model import _trainer

    paths = make_inputs(tmp_path / "in")
    cfg = tiny_config(tmp_path)
    cfg["reportgen"]["encoders"], cfg["reportgen"]["sizes"] = ["fake"], [8]
    _trainer(cfg, paths, tmp_path / "model").run()
    res = tmp_path / "results"
    res.mkdir()
    gens = {"fake/n8": res / "gen.jsonl"}
    generate(cfg, tmp_path / "model", paths["test"], paths["findings"], paths["reports"], gens["fake/n8"])
    files = {k: res / f"{k}.jsonl" for k in ("prior_only", "retrieval", "shuffled_image")}
    baselines(
        cfg, tmp_path / "model", paths["train"], paths["test"], paths["findings"], paths["reports"], *files.values()
    )
    names = baseline_names("fake", 8)
    for k, f in files.items():
        rows = [json.loads(x) for x in f.read_text().splitlines()]
        assert len(rows) == 12 and {r["variant"] for r in rows} == {"indication", "no_indication"}
        gens[names[k]] = f
    shuffled = [json.loads(x) for x in files["shuffled_image"].read_text().splitlines()]
    assert all(r["image_of"] != r["study_id"] for r in shuffled)
    frontier = res / "frontier.jsonl"
    frontier.write_text("")
    triage_set(
        cfg, paths["findings"], paths["ct"], paths["mri"], paths["test"], None, res / "set.csv", res / "acuity.csv"
    )
    triage(
        cfg,
        gens,
        frontier,
        paths["findings"],
        paths["reports"],
        res / "set.csv",
        res / "acuity.csv",
        tmp_path / "cache",
        res / "pred.csv",
        res / "val.csv",
    )
    out = {k: res / f"{k}.csv" for k in ("text", "triage", "cost", "scaling", "labels", "diff")}
    evaluate(
        cfg,
        gens,
        frontier,
        res / "pred.csv",
        res / "set.csv",
        paths["findings"],
        paths["ct"],
        paths["mri"],
        *out.values(),
    )
    tri, text = pd.read_csv(out["triage"]), pd.read_csv(out["text"])
    for name in names.values():
        assert name in set(tri.model) and name in set(text.model)
    assert "repeated" in text.columns
    labels = pd.read_csv(out["labels"])
    assert {"macro", "micro"} <= set(labels.label)
    diff = pd.read_csv(out["diff"])
    assert set(diff.baseline) == set(names.values())
    assert {"triage_accuracy", "urgent_sensitivity", "label_micro_f1", "label_macro_f1"} <= set(diff.metric)
    assert (diff.ci_lo <= diff.difference + 1e-12).all() and (diff.difference <= diff.ci_hi + 1e-12).all()
