"""The scaling grid (Fig. 2b): nested data subsets, the grid's expansion into pretrain.models, the fits and their
intervals, and the workflow's grid target (a dry run of the small test DAG; fig2b from synthetic tables)."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pandas as pd
import pytest

from neurovfm.config import ConfigError, default_config, load_config, prepared, validate
from neurovfm.jepa.subset import n_kept, restrict_dataset, select_studies, study_key, write_records
from neurovfm.jepa.toy import ToyVolumes
from neurovfm.scaling_grid import fraction_name, grid, grid_names, unimodal_pairs, with_grid

# ---------------------------------------------------------------------------------------------- data subsets


def _volumes(n_ct=200, n_mr=300, per_study=2):
    vols = []
    for mod, n in (("CT", n_ct), ("MR", n_mr)):
        for s in range(n):
            for k in range(per_study):
                vols.append({"series_id": f"{mod}{s}-{k}", "study_id": f"{mod.lower()}{s:04d}", "modality": mod})
    return vols


def _studies(vols, keep):
    return {vols[i]["study_id"] for i in keep}


def test_subsets_are_nested_and_keep_each_modality_share():
    vols = _volumes()
    subsets = {f: select_studies(vols, f, None, seed=7) for f in (0.05, 0.1, 0.25, 0.5, 1.0)}
    fracs = sorted(subsets)
    for small, large in zip(fracs, fracs[1:]):
        assert _studies(vols, subsets[small].keep) < _studies(vols, subsets[large].keep)
    for f, sub in subsets.items():
        assert len(sub.studies["CT"]) == n_kept(f, 200) == int(f * 200)
        assert len(sub.studies["MR"]) == int(f * 300)
        # whole studies: every volume of a kept study, in the split's order
        assert len(sub.keep) == 2 * (len(sub.studies["CT"]) + len(sub.studies["MR"]))
        assert sub.keep == sorted(sub.keep)
    assert subsets[1.0].is_everything and len(subsets[1.0].keep) == len(vols)


def test_subset_is_deterministic_and_keyed_by_the_seed_only():
    vols = _volumes()
    a = select_studies(vols, 0.25, None, seed=7)
    b = select_studies(list(reversed(vols)), 0.25, None, seed=7)  # the split's order does not matter
    assert a.studies == b.studies and a.digest() == b.digest()
    c = select_studies(vols, 0.25, None, seed=8)
    assert a.studies != c.studies
    # a study's rank does not depend on the other studies: dropping some keeps the order of the rest
    rest = [v for v in vols if v["study_id"] not in set(a.studies["CT"][:5])]
    d = select_studies(rest, 1.0, None, seed=7)
    assert d.studies["CT"][: len(a.studies["CT"]) - 5] == a.studies["CT"][5:]
    assert study_key("ct0001", 7) == study_key("ct0001", 7) != study_key("ct0001", 8)


def test_fractions_count_exactly():
    assert n_kept(0.29, 100) == 29  # 0.29 * 100 = 28.999999999999996 in floating point
    assert n_kept(0.05, 19) == 0 and n_kept(0.05, 20) == 1 and n_kept(1.0, 7) == 7


def test_modality_filter_keeps_one_modality():
    vols = _volumes()
    ct = select_studies(vols, 1.0, ["CT"], seed=1)
    assert set(ct.studies) == {"CT"} and {vols[i]["modality"] for i in ct.keep} == {"CT"}
    assert len(ct.keep) == 400
    mr = select_studies(vols, 0.5, ["MR"], seed=1)
    assert {vols[i]["modality"] for i in mr.keep} == {"MR"} and len(mr.studies["MR"]) == 150
    assert _studies(vols, mr.keep) <= _studies(vols, select_studies(vols, 0.5, None, seed=1).keep)


def test_a_fraction_that_keeps_no_study_is_a_clear_error():
    vols = _volumes(n_ct=10, n_mr=300)
    with pytest.raises(ConfigError, match=r"tiny-d5: data_fraction 0\.05 keeps none of the 10 CT studies"):
        select_studies(vols, 0.05, None, seed=0, model_name="tiny-d5")
    only_mr = [v for v in vols if v["modality"] == "MR"]
    with pytest.raises(ConfigError, match="modality CT is listed"):
        select_studies(only_mr, 1.0, ["CT"], seed=0)
    # the defaults (both modalities) accept a split without CT
    assert set(select_studies(only_mr, 1.0, None, seed=0).studies) == {"MR"}


def test_restricted_dataset_and_records(tmp_path):
    toy = ToyVolumes(n=12, grid=(4, 5, 5), seed=0, ct_every=2)
    before = {v["series_id"]: toy[i]["image"] for i, v in enumerate(toy.volumes)}
    sub = restrict_dataset(toy, {"encoder": "tiny", "data_fraction": 0.5, "modalities": ["MR"]}, seed=3)
    assert len(toy) == len(sub.keep) == 3 and {v["modality"] for v in toy.volumes} == {"MR"}
    for i, v in enumerate(toy.volumes):  # an item is still its own volume
        assert toy[i]["series_id"] == v["series_id"]
        assert np.array_equal(toy[i]["image"], before[v["series_id"]])
    write_records(tmp_path, sub)
    record = json.loads((tmp_path / "data.json").read_text())
    assert record["per_modality"]["MR"] == {"studies_available": 6, "studies_used": 3, "volumes_used": 3}
    assert record["per_modality"]["CT"]["studies_used"] == 0 and record["studies_used"] == 3
    table = pd.read_csv(tmp_path / "studies.csv")
    assert list(table.columns) == ["study_id", "modality", "rank"] and set(table["study_id"]) == set(sub.studies["MR"])


# ---------------------------------------------------------------------------------------------- grid expansion
NAME = re.compile(r"^(?!random$)(?!.*_vs_)(?!.*_categories$)[A-Za-z0-9_.-]+$")  # the schema's model names


def test_demo_grid_names_and_entries():
    cfg = load_config()
    models = grid(cfg)
    names = [m.name for m in models]
    assert names == ["micro-d25", "micro-d50", "micro", "tiny-d25", "tiny-d50", "tiny", "tiny-ct", "tiny-mri"]
    assert all(NAME.match(n) for n in names)
    table = cfg["pretrain"]["models"]
    assert table["tiny-d25"] == {**table["tiny"], "data_fraction": 0.25}
    assert table["tiny-ct"] == {**table["tiny"], "modalities": ["CT"]}
    assert table["tiny-mri"] == {**table["tiny"], "modalities": ["MR"]}
    assert "data_fraction" not in table["tiny"] and "data_fraction" not in table["micro"]
    assert unimodal_pairs(cfg) == {"ct": ("tiny", "tiny-ct"), "mri": ("tiny", "tiny-mri")}
    assert grid_names(cfg) == names
    assert cfg["pretrain"]["train"] == ["tiny"]  # the grid is not part of `all`


def test_grid_expansion_is_idempotent_and_revalidated():
    cfg = load_config()
    assert with_grid(cfg)["pretrain"]["models"] == cfg["pretrain"]["models"]
    assert prepared(validate(copy.deepcopy(cfg)))["pretrain"]["models"] == cfg["pretrain"]["models"]


def test_paper_grid():
    paper = load_config("profiles/armis2/paper.yaml")
    names = grid_names(paper)
    assert len(names) == 3 * 4 + 2
    assert {"small", "medium", "base", "small-d5", "medium-d10", "base-d25", "base-ct", "base-mri"} <= set(names)
    assert "tiny-d25" not in names and paper["pretrain"]["models"]["base-d5"]["data_fraction"] == 0.05
    assert fraction_name("small", 0.025) == "small-d2.5"


@pytest.mark.parametrize(
    "scaling, needle",
    [
        ({"models": ["nope"]}, "not a key of pretrain.models"),
        ({"models": ["tiny", "tiny_mae"]}, "both of size tiny"),
        ({"unimodal": "tiny_mae"}, "not one of scaling.models"),
        ({"models": ["tiny_hlip"], "unimodal": "tiny_hlip"}, "HLIP model"),
        ({"data_fractions": [0.1234567, 0.12345671]}, "same model name twice"),
    ],
)
def test_bad_grids_name_the_problem(scaling, needle):
    with pytest.raises(ConfigError, match=needle):
        default_config(scaling=scaling)


def test_generated_name_clash_is_an_error():
    with pytest.raises(ConfigError, match="pretrain.models.tiny-d25: the scaling grid generates"):
        default_config(
            pretrain={
                "models": {
                    "tiny-d25": {"encoder": "tiny", "predictor_dim": 96, "predictor_depth": 1, "predictor_heads": 4}
                }
            }
        )


def test_a_template_with_a_fraction_is_refused():
    with pytest.raises(ConfigError, match="sets data_fraction"):
        default_config(pretrain={"models": {"micro": {"data_fraction": 0.5}}})
