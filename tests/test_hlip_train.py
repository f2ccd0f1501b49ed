"""HLIP through the shared trainer on CPU with toy study-report pairs: gradients reach both encoders and the
temperature, the loss falls when text and image are paired, no report text reaches the output folder, the exported
encoder is a drop-in for Vol-JEPA's, a killed-and-resumed run ends with the same weights as an uninterrupted one;
the text side reads the train split only and loads a local folder strictly."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from neurovfm.config import default_config
from neurovfm.features.encoders import load_frozen
from neurovfm.hlip.collate import StudyCollator
from neurovfm.hlip.model import build_hlip
from neurovfm.hlip.text import TextTokenizer, build_bert, fit_tokenizer, load_folder, report_text, study_texts
from neurovfm.hlip.train import STEP_COLUMNS, clip_step, training_texts
from neurovfm.jepa import checkpoint as ckpt
from neurovfm.jepa.build import build_models, model_config
from neurovfm.jepa.train import param_groups, train
from neurovfm.models.packing import cu_seqlens_from_lengths
from neurovfm.models.patch_embed import patchify
from hlip_fixtures import MARKER, TINY_HLIP, PairedToy

HLIP = TINY_HLIP
JEPA = {"encoder": "tiny", "predictor_dim": 48, "predictor_depth": 1, "predictor_heads": 2}


def config(steps=4, models=None, **pretrain):
    return default_config(
        pretrain={
            "models": models or {"h": HLIP, "j": JEPA},
            "train": ["h"],
            "steps": steps,
            "batch_size": 4,
            "checkpoint_every": 2,
            "progress_every_s": 1000,
            **pretrain,
        }
    )


@pytest.fixture
def reports(tmp_path):
    """A private folder of its own: the output folders must never hold what is in it."""
    data = PairedToy(n_studies=16)
    path = tmp_path / "private" / "reports.jsonl"
    path.parent.mkdir()
    data.write_reports(path, extra={"valstudy": f"FINDINGS: {MARKER} val-only finding."})
    return {"reports": path}


def test_gradients_reach_both_encoders_and_the_temperature(reports):
    cfg = config()
    data = PairedToy(n_studies=16)
    model = model_config(cfg["pretrain"], "h", cfg["preprocess"]["patch"])
    texts = training_texts(model, data.volumes, reports)
    torch.manual_seed(0)
    hlip, tokenizer = build_hlip(model, texts)
    collate = StudyCollator(cfg["pretrain"], cfg["preprocess"]["patch"], 0, texts, TextTokenizer(tokenizer, 32))
    items = [{**data[i], "epoch": 0, "offset": i} for i in range(8)]
    batch = collate(items)
    assert batch.study_cu.tolist() == [0, *torch.cumsum(torch.tensor(batch.n_context), 0).tolist()]
    optimizer = torch.optim.AdamW(param_groups(hlip))
    out = clip_step(hlip, batch, optimizer, grad_clip=1e9, amp=None)
    assert torch.isfinite(out["loss"]) and float(out["temperature"]) == pytest.approx(0.07)
    for name, p in hlip.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    for part in ("encoder.blocks.0", "encoder.patch_embed", "pool", "image_proj", "text.transformer", "text_proj"):
        norm = sum(float(p.grad.norm()) for n, p in hlip.named_parameters() if n.startswith(part))
        assert norm > 0, f"no gradient reaches {part}"
    assert float(hlip.logit_scale.log_scale.grad.abs()) > 0


def test_loss_falls_and_no_report_text_is_written(tmp_path, reports):
    """Toy reports state what the image shows (large or small head per axis): the CLIP loss falls."""
    models = {"h": {**HLIP, "batch_studies": 8}, "j": JEPA}
    cfg = config(steps=40, checkpoint_every=40, models=models)
    out = tmp_path / "out"
    result = train(cfg, "h", PairedToy(n_studies=16), out, threads=1, text_sources=reports)
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics.columns) == STEP_COLUMNS and list(metrics["step"]) == list(range(40))
    first, last = metrics["loss"].head(8).mean(), metrics["loss"].tail(8).mean()
    assert last < 0.75 * first, (first, last)  # chance: log(4) = 1.39 with 4 studies per modality
    assert result["last_loss"] < result["first_loss"]
    assert (metrics["n_studies"] == 8).all() and (metrics["n_volumes"] == 8).all()
    assert metrics[["loss_CT", "loss_MR", "top1_CT", "top1_MR", "temperature", "grad_norm"]].notna().all().all()
    assert (metrics["context_fraction_MR"] == 1.0).all()  # whole toy volumes
    state = ckpt.load(out / ckpt.CHECKPOINT)
    assert set(state["modules"]) == {"encoder", "pool", "image_proj", "text", "text_proj", "logit_scale"}
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} == {
        "checkpoint.pt",
        "encoder.pt",
        "metrics.csv",
        "context_fractions.csv",
        "data.json",
        "studies.csv",
    }
    for path in files:
        blob = path.read_bytes()
        for word in (MARKER, MARKER.lower(), "narrow", "shallow"):
            assert word.encode() not in blob, f"{word!r} of the reports is in {path.name}"


def test_exported_encoder_is_a_drop_in_for_vol_jepas(tmp_path, reports):
    cfg = config(steps=1)
    train(cfg, "h", PairedToy(n_studies=16), tmp_path, threads=1, text_sources=reports)
    hlip, model = load_frozen("h", cfg, tmp_path / "encoder.pt")
    jepa = build_models(model_config(cfg["pretrain"], "j", cfg["preprocess"]["patch"]), encoder_only=True).eval()
    assert model["objective"] == "hlip" and not hlip.training
    assert {k: v.shape for k, v in hlip.state_dict().items()} == {k: v.shape for k, v in jepa.state_dict().items()}
    patches, coords = patchify(PairedToy(n_studies=2)[0]["image"], cfg["preprocess"]["patch"])
    cu, max_len = cu_seqlens_from_lengths([patches.shape[0]])
    with torch.no_grad():
        assert hlip(patches, coords, cu, max_len).shape == jepa(patches, coords, cu, max_len).shape


def test_resume_gives_identical_weights(tmp_path, reports):
    """Drop-path and BERT's dropout (global torch RNG) make the RNG states matter."""
    cfg = config(models={"h": {**HLIP, "drop_path": 0.2}})
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    train(cfg, "h", PairedToy(n_studies=16), straight, threads=1, text_sources=reports)
    stop = train(cfg, "h", PairedToy(n_studies=16), killed, threads=1, stop_after=3, text_sources=reports)
    assert stop == {"step": 3, "stopped": True} and ckpt.load(killed / ckpt.CHECKPOINT)["step"] == 2
    torch.manual_seed(1234)  # the resumed process starts with other global RNG states
    train(cfg, "h", PairedToy(n_studies=16), killed, threads=1, text_sources=reports)
    a, b = ckpt.load(straight / ckpt.CHECKPOINT), ckpt.load(killed / ckpt.CHECKPOINT)
    assert a["step"] == b["step"] == 4
    for name in a["modules"]:
        for key, value in a["modules"][name].items():
            assert torch.equal(value, b["modules"][name][key]), f"{name}.{key} differs after resume"
    pd.testing.assert_series_equal(
        pd.read_csv(straight / "metrics.csv")["loss"], pd.read_csv(killed / "metrics.csv")["loss"]
    )
    # other texts: the checkpoint is not resumed
    train(cfg, "h", PairedToy(n_studies=16), killed, threads=1, stop_after=3, text_sources=reports)
    other = Path(reports["reports"]).with_name("other.jsonl")
    PairedToy(n_studies=16, seed=5).write_reports(other)
    assert (
        train(cfg, "h", PairedToy(n_studies=16), killed, threads=1, stop_after=1, text_sources={"reports": other})[
            "step"
        ]
        == 1
    )


def test_texts_come_from_the_training_split_only(tmp_path, reports):
    data = PairedToy(n_studies=4)
    studies = {v["study_id"] for v in data.volumes}
    texts = study_texts("report", reports["reports"], studies)
    assert set(texts) == studies  # "valstudy" is not in the training index
    assert all("headache" not in t and "IMPRESSION" not in t for t in texts.values())  # no indication, no headers
    assert report_text("INDICATION: x\n\nFINDINGS: a b.\n\nIMPRESSION: c.") == "a b.\nc."
    findings = tmp_path / "findings.jsonl"
    rows = [{"study_id": s, "split": "train", "findings": ["One.", "Two."]} for s in sorted(studies)]
    rows.append({"study_id": "valstudy", "split": "val", "findings": ["Never read."]})
    findings.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert study_texts("findings", findings, studies) == {s: "One. Two." for s in studies}
    rows[0]["split"] = "test"  # a training study said to be in another split
    findings.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match="split 'test'"):
        study_texts("findings", findings, studies)
    model = {"name": "h", **HLIP}
    with pytest.raises(ValueError, match="train split only"):
        training_texts(model, [{**v, "split": "val"} for v in data.volumes], reports)
    with pytest.raises(ValueError, match="needs the reports file"):
        training_texts(model, data.volumes, {"findings": findings})


def test_local_text_encoder_folder_loads_strictly(tmp_path):
    tokenizer = fit_tokenizer({"a": "small head", "b": "large head"}, 300)
    torch.manual_seed(0)
    bert = build_bert(HLIP["text"], len(tokenizer), tokenizer.pad_token_id)
    folder = tmp_path / "bert"
    bert.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    tok2, bert2 = load_folder(folder)
    assert tok2("small head")["input_ids"] == tokenizer("small head")["input_ids"]
    assert all(torch.equal(v, bert2.state_dict()[k]) for k, v in bert.state_dict().items())
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 2}))  # weights of 1 layer
    with pytest.raises(ValueError, match="does not load strictly"):
        load_folder(folder)
    with pytest.raises(FileNotFoundError):
        load_folder(tmp_path / "absent")


def test_max_tokens_keeps_a_random_subset_of_each_volumes_foreground_in_raster_order(reports):
    """FLIP-style token dropping: at most max_tokens per volume, a subset of the full crop's tokens (same
    patches and coordinates), in raster order, the same draw for the same item, smaller volumes untouched."""
    cfg = config()
    data = PairedToy(n_studies=4)
    model = model_config(cfg["pretrain"], "h", cfg["preprocess"]["patch"])
    texts = training_texts(model, data.volumes, reports)
    _, tokenizer = build_hlip(model, texts)
    args = (cfg["pretrain"], cfg["preprocess"]["patch"], 0, texts, TextTokenizer(tokenizer, 32))
    item = {**data[0], "epoch": 0, "offset": 0}
    full_p, full_c, n_fg = StudyCollator(*args).volume(item)
    cap = full_p.shape[0] // 3
    assert cap >= 2
    p, c, n_fg_capped = StudyCollator(*args, max_tokens=cap).volume(item)
    assert p.shape[0] == cap and n_fg_capped == n_fg
    full = {tuple(x): i for i, x in enumerate(full_c.tolist())}
    rows = [full[tuple(x)] for x in c.tolist()]  # every kept token is a token of the full crop ...
    assert rows == sorted(rows) and len(set(rows)) == cap  # ... in raster order, none twice
    assert torch.equal(p, full_p[rows])
    again, _, _ = StudyCollator(*args, max_tokens=cap).volume(item)
    assert torch.equal(again, p)
    other, _, _ = StudyCollator(*args, max_tokens=cap).volume({**item, "epoch": 1})
    assert not torch.equal(other, p)  # a fresh draw in another epoch
    whole, _, _ = StudyCollator(*args, max_tokens=full_p.shape[0] + 5).volume(item)
    assert torch.equal(whole, full_p)
    with pytest.raises(ValueError, match="max_tokens"):
        StudyCollator(*args, max_tokens=0)


def test_a_models_own_steps_override_the_shared_budget(tmp_path, reports):
    models = {"h": {**HLIP, "steps": 2, "max_tokens": 16}, "j": JEPA}
    cfg = config(steps=5, models=models, checkpoint_every=100)
    train(cfg, "h", PairedToy(n_studies=16), tmp_path, threads=1, text_sources=reports)
    steps = pd.read_csv(tmp_path / "metrics.csv")["step"]
    assert sorted(set(steps)) == [0, 1]  # two optimiser steps (numbered from 0), not pretrain.steps' five
