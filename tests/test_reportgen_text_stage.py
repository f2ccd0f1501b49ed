"""The demo LM's text-only stage 0 as a job of its own: a training run that loads it ends exactly where a run that
trains stage 0 itself ends; a file trained on other studies or settings is not used (stage 0 trains again, with a
warning); no stage 0, no use. The shard-index view of which studies have a series agrees with the features."""

import json
import logging

import pytest
import torch

from neurovfm.store import index as idx
from reportgen_fixtures import make_inputs, make_trainer, tiny_config

torch.set_num_threads(1)


def _shard_index(paths, out, drop: str | None = None):
    """A preprocessed-shards index for the fixture's train studies: one volume per feature entry, its foreground
    tokens the entry's (``drop``: that study's volumes without foreground, so it has no series)."""
    entries = json.loads(paths["train"].read_text())["entries"]
    volumes = []
    for k, e in enumerate(entries):
        n = 0 if e["study_id"] == drop else int(e["n_tokens"])
        volumes.append(
            {
                "series_id": e["series_id"],
                "study_id": e["study_id"],
                "modality": e["modality"],
                "shard": 0,
                "offset": k,
                "nbytes": 1,
                "mask": {"n_foreground": n},
            }
        )
    layouts = {
        "CT": {"channels": [{"name": w} for w in ("brain", "blood", "bone")]},
        "MR": {"channels": [{"name": "mri"}]},
    }
    index = {"format": idx.FORMAT, "version": idx.VERSION, "shards": [{"nbytes": len(volumes)}], "layouts": layouts}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**index, "volumes": volumes}))
    return out


def _trainer(cfg, paths, out, text_stage=None):
    return make_trainer(cfg, paths, out, text_stage=text_stage)


def _assert_same_run(a, b):
    for k, v in a.model.state_dict().items():
        torch.testing.assert_close(v, b.model.state_dict()[k], atol=0, rtol=0, msg=k)
    for k, v in a.connector.state_dict().items():
        torch.testing.assert_close(v, b.connector.state_dict()[k], atol=0, rtol=0, msg=k)
    assert [(r["stage"], r["step"], r["loss"], r["lr"]) for r in a.rows] == [
        (r["stage"], r["step"], r["loss"], r["lr"]) for r in b.rows
    ]


def test_a_run_from_the_text_stage_file_ends_as_one_that_trains_stage_zero(tmp_path, one_thread, caplog):
    from neurovfm.reportgen.text_stage import train_text_stage

    paths = make_inputs(tmp_path / "in")
    cfg = tiny_config(tmp_path)
    text = tmp_path / "text_stage.pt"
    saved = train_text_stage(
        cfg, _shard_index(paths, tmp_path / "shards" / "index.json"), paths["findings"], paths["reports"], text
    )
    assert saved["enabled"] and len(saved["rows"]) == cfg["reportgen"]["lm"]["text_pretrain"]["steps"]
    plain = _trainer(cfg, paths, tmp_path / "plain")
    plain.run()
    with caplog.at_level(logging.INFO, logger="neurovfm"):
        shared = _trainer(cfg, paths, tmp_path / "shared", text_stage=text)
        trained = []
        original = shared.train_stage
        shared.train_stage = lambda stage, *a: (trained.append(stage), original(stage, *a))
        shared.run()
    assert 0 not in trained and trained == [1, 2]  # stage 0 was loaded, not trained
    assert "stage 0 taken from the text-only job" in caplog.text
    _assert_same_run(plain, shared)


def test_a_text_stage_of_other_studies_is_not_used(tmp_path, one_thread, caplog):
    from neurovfm.reportgen.text_stage import train_text_stage

    paths = make_inputs(tmp_path / "in")
    cfg = tiny_config(tmp_path)
    text = tmp_path / "text_stage.pt"
    shards = _shard_index(paths, tmp_path / "shards" / "index.json", drop="train000")
    train_text_stage(cfg, shards, paths["findings"], paths["reports"], text)
    plain = _trainer(cfg, paths, tmp_path / "plain")
    plain.run()
    with caplog.at_level(logging.WARNING, logger="neurovfm"):
        other = _trainer(cfg, paths, tmp_path / "other", text_stage=text)
        other.run()
    assert "trained on other studies or settings" in caplog.text
    _assert_same_run(plain, other)
    # another setting of stage 0 (its learning rate) is refused the same way
    cfg2 = tiny_config(tmp_path)
    cfg2["reportgen"]["lm"]["text_pretrain"]["lr"] = 2e-3
    text2 = tmp_path / "text_stage2.pt"
    train_text_stage(
        cfg2, _shard_index(paths, tmp_path / "s2" / "index.json"), paths["findings"], paths["reports"], text2
    )
    assert not _trainer(cfg, paths, tmp_path / "x", text_stage=text2).take_text_stage()


def test_no_text_stage_without_the_demo_lms_stage_zero(tmp_path, one_thread):
    from neurovfm.reportgen.text_stage import load_text_stage, train_text_stage

    paths = make_inputs(tmp_path / "in")
    cfg = tiny_config(tmp_path)
    cfg["reportgen"]["lm"]["text_pretrain"]["steps"] = 0
    text = tmp_path / "text_stage.pt"
    train_text_stage(cfg, _shard_index(paths, tmp_path / "s" / "index.json"), paths["findings"], paths["reports"], text)
    assert load_text_stage(text)["enabled"] is False
    trainer = _trainer(cfg, paths, tmp_path / "run", text_stage=text)
    trainer.run()
    assert {r["stage"] for r in trainer.rows} == {1, 2}
    torch.save({"format": "something else"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a text-stage file"):
        load_text_stage(tmp_path / "bad.pt")


def test_shard_studies_agree_with_the_feature_studies(tmp_path):
    from neurovfm.reportgen.data import ShardStudies, StudyTokens

    paths = make_inputs(tmp_path / "in")
    rg = tiny_config(tmp_path)["reportgen"]
    shards = ShardStudies(_shard_index(paths, tmp_path / "s" / "index.json", drop="train001"), rg)
    features = StudyTokens(paths["train"], rg)
    sids = [f"train{k:03d}" for k in range(6)]
    assert [shards.has(s) for s in sids] == [features.has(s) and s != "train001" for s in sids]
    assert features.has("train001") and not shards.has("unknown")
