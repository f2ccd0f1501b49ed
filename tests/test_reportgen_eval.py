"""Curation weights, answer parsing, text metrics against known values, the rule judge, the balanced set and
the cost table."""

import numpy as np
import pandas as pd
import pytest

from neurovfm.reportgen.balanced import acuity_from_labels, balanced_set
from neurovfm.reportgen.cost import cost_table
from neurovfm.reportgen.curation import draw, rarest_label_weights
from neurovfm.reportgen.generate import parse_findings
from neurovfm.reportgen.metrics_text import (
    bleu2,
    implementations,
    meteor15_available,
    meteor15_scores,
    meteor_nltk,
    rouge_l,
    score_pairs,
)
from neurovfm.reportgen.triage import RuleJudge
from reportgen_fixtures import make_inputs, tiny_config


def test_rarest_label_weights_against_naive_loop():
    labels = pd.DataFrame({"a": [1, 1, 1, 0, 0, 1], "b": [0, 1, 0, 0, 0, 0], "c": [0, 0, 0, 0, 1, 0]})
    modality = pd.Series(["CT", "CT", "CT", "CT", "MR", "MR"])
    w = rarest_label_weights(labels, modality)
    # CT: prevalence a 3/4, b 1/4, none 1/4; MR: a 1/2, c 1/2 (each MR study has one label)
    assert w == pytest.approx([4 / 3, 4, 4 / 3, 4, 2, 2])
    ids = [f"s{i}" for i in range(6)]
    drawn = draw(ids, w, 20000, seed=1)
    freq = pd.Series(drawn).value_counts(normalize=True).reindex(ids).to_numpy()
    assert freq == pytest.approx(w / w.sum(), abs=0.01)
    assert draw(ids, w, 5, seed=3) == draw(ids, w, 5, seed=3)


@pytest.mark.parametrize(
    "text,status,items",
    [
        ('["Acute hemorrhage.", "Midline shift."]', "ok", ["Acute hemorrhage.", "Midline shift."]),
        ("```json\n[]\n```", "ok", []),
        ('["cut off', "malformed", []),
        ('{"findings": ["x"]}', "malformed", []),
        ('["a", 3]', "malformed", []),
        ("", "malformed", []),
    ],
)
def test_parse_findings(text, status, items):
    got, st, err = parse_findings(text)
    assert (got, st) == (items, status)
    assert (err is None) == (status == "ok")


def test_bleu2_known_value():
    # Papineni et al. (2002), candidate 1: modified precisions 17/18 (unigrams) and 10/17 (bigrams), no penalty
    cand = "It is a guide to action which ensures that the military always obeys the commands of the party"
    refs = [
        "It is a guide to action that ensures that the military will forever heed Party commands",
        "It is the guiding principle which guarantees the military forces always being under the command of the Party",
        "It is the practical guide for the army always to heed the directions of the party",
    ]
    assert bleu2(cand, refs) == pytest.approx(np.sqrt(17 / 18 * 10 / 17), abs=1e-6)
    assert bleu2("", refs) == 0.0


def test_rouge_l_known_values():
    # Lin (2004): LCS of "police killed the gunman" with S2 is 3 words, with S3 2 words
    assert rouge_l("police kill the gunman", "police killed the gunman") == pytest.approx(0.75)
    assert rouge_l("the gunman kill police", "police killed the gunman") == pytest.approx(0.5)
    assert rouge_l("a b", "") == 0.0


def test_nltk_meteor_exact_and_stem_stages():
    # Fmean = 1 for a full match; penalty 0.5 * (chunks / matches) ** 3
    meteor = meteor_nltk
    assert meteor("the cat sat", "the cat sat") == pytest.approx(1 - 0.5 * (1 / 3) ** 3, abs=1e-4)
    assert meteor("the cats sat", "the cat sat") == pytest.approx(1 - 0.5 * (1 / 3) ** 3, abs=1e-4)  # stem
    assert meteor("sat the cat", "the cat sat") == pytest.approx(1 - 0.5 * (2 / 3) ** 3, abs=1e-4)
    # 2 of 3 hypothesis words match 2 of 4 reference words in one chunk: P 2/3, R 1/2
    p, r = 2 / 3, 1 / 2
    fmean = p * r / (0.9 * p + 0.1 * r)
    assert meteor("the cat ran", "the cat sat down") == pytest.approx(fmean * (1 - 0.5 * (1 / 2) ** 3), abs=1e-4)


@pytest.mark.skipif(not meteor15_available(), reason="METEOR 1.5 needs a Java runtime and pycocoevalcap")
def test_meteor15_matches_synonyms_that_the_nltk_lower_bound_misses():
    hyps = ["the cat sat", "acute subdural hematoma on the left", "", "a large mass"]
    refs = ["the cat sat", "acute left subdural haematoma", "no key positive findings", "a big mass"]
    scores = meteor15_scores(hyps, refs)
    assert scores[0] == pytest.approx(1.0) and scores[2] == 0.0
    assert 0 < scores[1] < 1
    # "large" / "big": METEOR 1.5's synonym stage matches them, the exact + stem stages do not
    assert scores[3] > meteor_nltk(hyps[3], refs[3]) + 0.1
    assert score_pairs("METEOR", hyps, refs) == scores
    assert implementations()["METEOR"].startswith("METEOR 1.5")


def test_each_metric_names_its_implementation():
    impl = implementations()
    assert impl["BLEU-2"].startswith("sacrebleu") and impl["ROUGE-L"].startswith("rouge-score")
    assert impl["METEOR"].startswith("METEOR 1.5") == meteor15_available()
    if not meteor15_available():
        assert "lower bound" in impl["METEOR"]


def test_rule_judge_levels():
    j = RuleJudge(["chronic", "old"])
    assert j.triage([], "Worst headache of life.", "CT") == "unremarkable"
    assert j.triage(["Acute left parietal intraparenchymal hemorrhage."], None, "CT") == "urgent"
    assert j.triage(["Right frontal extra-axial mass, likely meningioma."], None, "MR") == "routine"  # specific wins
    assert j.triage(["Subacute-chronic right SDH up to 4 mm."], None, "MR") == "routine"  # chronicity cue
    assert j.triage(["Acute right subdural hematoma."], None, "MR") == "urgent"


def test_balanced_set_and_label_acuity(tmp_path):
    cand = pd.DataFrame(
        {
            "study_id": [f"s{i:02d}" for i in range(18)],
            "modality": ["CT", "MR"] * 9,
            "acuity": (["urgent"] * 6 + ["routine"] * 6 + ["unremarkable"] * 6),
        }
    )
    cand = pd.concat(
        [cand, pd.DataFrame({"study_id": ["x1", "x2"], "modality": ["CT", "CT"], "acuity": ["urgent", "urgent"]})]
    )
    out = balanced_set(cand, None, seed=0)
    assert out.groupby(["modality", "acuity"]).size().tolist() == [3] * 6
    assert out.equals(balanced_set(cand, None, seed=0))
    with pytest.raises(ValueError):
        balanced_set(cand, 4, seed=0)
    paths = make_inputs(tmp_path)
    acuity = acuity_from_labels(paths["ct"], paths["mri"])
    assert acuity["train000"] == "urgent" and acuity["train003"] == "routine" and acuity["train004"] == "unremarkable"


def test_cost_table_arithmetic(tmp_path):
    c = tiny_config(tmp_path)["reportgen"]["cost"]
    t = cost_table(c, {"here": 6.0}).set_index("source")
    paper = t.loc["paper's inference time"]
    hours = 100 * 3.0 / 3600
    assert paper.usd_per_100 == pytest.approx(hours * c["usd_per_hour"])
    assert paper.gco2e_per_100 == pytest.approx(hours * c["gpu_power_w"] / 1000 * c["grid_kgco2e_per_kwh"] * 1000)
    assert t.iloc[1].usd_per_100 == pytest.approx(2 * paper.usd_per_100)
    gpt = t.iloc[2]
    f = c["frontier"]["gpt-5"]
    assert gpt.usd_per_100 == pytest.approx(
        100 * (f["input_tokens"] * f["usd_per_m_input"] + f["output_tokens"] * f["usd_per_m_output"]) / 1e6
    )
