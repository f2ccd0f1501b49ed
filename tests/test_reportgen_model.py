"""Perceiver, connector placement, prompts, the local-path LM loader, training resume and generation, gradient
accumulation and checkpointing against one plain pass."""

import copy
import json

import pandas as pd
import pytest
import torch

from neurovfm.reportgen.connector import IGNORE, Connector, expand_placeholders, inputs_embeds
from neurovfm.reportgen.perceiver import PerceiverResampler
from neurovfm.reportgen.prompt import encode, stage1_target, stage2_target
from neurovfm.reportgen.tokenizer import IMAGE, IM_END, token_id, train_bpe
from reportgen_fixtures import make_inputs, make_trainer, tiny_config

torch.set_num_threads(1)


def test_perceiver_shapes_and_padding_invariance():
    torch.manual_seed(0)
    p = PerceiverResampler(dim_in=8, width=16, latents=5, depth=2, heads=2, ff_mult=2).eval()
    series = [torch.randn(n, 8) for n in (3, 17, 1)]
    out = p(series)
    assert out.shape == (3, 5, 16)
    for k, s in enumerate(series):  # a series' latents do not depend on the padding of its batch
        torch.testing.assert_close(p([s])[0], out[k], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        p([torch.zeros(0, 8)])


def test_expand_placeholders_masks_visual_slots():
    ids, labels, n = expand_placeholders([1, 9, 2, 9, 3], [IGNORE, IGNORE, IGNORE, IGNORE, 3], 9, 3)
    assert n == 2
    assert ids == [1, 9, 9, 9, 2, 9, 9, 9, 3]
    assert labels == [IGNORE] * 8 + [3]


def test_inputs_embeds_places_visual_tokens_in_order():
    embed = torch.nn.Embedding(10, 4)
    ids = torch.tensor([[1, 9, 9, 2, 9, 9, 3]])
    visual = torch.arange(16, dtype=torch.float32).reshape(4, 4)
    out = inputs_embeds(embed, ids, 9, [visual])
    torch.testing.assert_close(out[0, [1, 2, 4, 5]], visual)  # series after series, where the slots are
    torch.testing.assert_close(out[0, [0, 3, 6]], embed(torch.tensor([1, 2, 3])))  # text untouched
    with pytest.raises(ValueError):
        inputs_embeds(embed, ids, 9, [visual[:3]])


def test_connector_output_rows_per_series():
    c = Connector(8, 12, {"latents": 4, "depth": 1, "heads": 2, "width": 16, "ff_mult": 2})
    out = c([torch.randn(5, 8), torch.randn(2, 8)])
    assert out.shape == (8, 12)


def test_prompt_masks_everything_but_the_answer():
    tok = train_bpe(["Acute hemorrhage.", "No key positive findings.", '["A finding."]'], 300)
    ex = encode(tok, "sys", 2, "Headache.", "List findings.", '["Acute hemorrhage."]', 3, 512)
    image = token_id(tok, IMAGE)
    assert ex.n_images == 2 and ex.ids.count(image) == 6
    answer = [t for t, lab in zip(ex.ids, ex.labels) if lab != IGNORE]
    assert answer[-1] == token_id(tok, IM_END)
    assert tok.decode(answer[:-1]) == '["Acute hemorrhage."]'
    assert "Headache." in tok.decode(ex.ids) and "List findings." in tok.decode(ex.ids)
    cut = encode(tok, "sys", 2, None, None, "x " * 200, 3, 60)
    assert cut.truncated and len(cut.ids) == 60
    with pytest.raises(ValueError):
        encode(tok, "sys", 30, None, None, "x", 3, 60)
    assert stage1_target([], "Normal.") == "Normal." and json.loads(stage2_target(["a ", ""])) == ["a"]


def test_local_lm_roundtrip_adds_image_token(tmp_path):
    from transformers import PreTrainedTokenizerFast

    from neurovfm.reportgen.lm import load_local, tiny_qwen3

    cfg = tiny_config(tmp_path)
    tok = train_bpe(["some findings text"], 300)
    model = tiny_qwen3(cfg["reportgen"]["lm"]["tiny"], tok, seed=0)
    plain = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token=IM_END)
    plain.save_pretrained(tmp_path / "lm")  # saved without the image token: the loader must add it
    model.save_pretrained(tmp_path / "lm")
    loaded, tokenizer = load_local(str(tmp_path / "lm"))
    assert token_id(tokenizer, IMAGE) < loaded.get_input_embeddings().num_embeddings
    with pytest.raises(FileNotFoundError):
        load_local(str(tmp_path / "missing"))


def _trainer(cfg, paths, out):
    return make_trainer(cfg, paths, out)


def full_and_resumed(make, cfg, paths, tmp_path, stage: int, steps: int):
    """(an uninterrupted run, a run stopped after ``steps`` steps of ``stage`` and resumed from its checkpoint);
    ``make(cfg, paths, out)`` builds a trainer."""
    full = make(cfg, paths, tmp_path / "full")
    full.run()
    part = make(cfg, paths, tmp_path / "part")
    part.train_stage = _stop_after(part, stage=stage, steps=steps)
    with pytest.raises(KeyboardInterrupt):
        part.run()
    resumed = make(cfg, paths, tmp_path / "part")
    resumed.run()
    return full, resumed


def test_training_resumes_exactly_and_generates(tmp_path, one_thread):
    from neurovfm.reportgen.run import generate

    paths = make_inputs(tmp_path / "in")
    cfg = tiny_config(tmp_path)
    # interrupted run: stop after stage 1 plus one stage-2 step (the checkpoint of that step), then resume
    full, resumed = full_and_resumed(_trainer, cfg, paths, tmp_path, stage=2, steps=1)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0)
    for k, v in full.connector.state_dict().items():
        torch.testing.assert_close(v, resumed.connector.state_dict()[k], atol=0, rtol=0)
    assert [r["loss"] for r in full.rows] == [r["loss"] for r in resumed.rows]
    out = tmp_path / "gen.jsonl"
    generate(cfg, tmp_path / "full", paths["test"], paths["findings"], paths["reports"], out)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 12 and {r["variant"] for r in rows} == {"indication", "no_indication"}
    assert all(r["status"] in ("ok", "malformed") and (r["status"] == "ok" or r["error"]) for r in rows)
    _evaluate_without_phi(cfg, paths, {"fake/n8": out}, tmp_path)


def _evaluate_without_phi(cfg, paths, gens, tmp_path):
    """Triage set -> judges -> tables on the generated answers; no indication reaches the result files."""
    import pandas as pd

    from neurovfm.reportgen.run import evaluate, triage, triage_set

    res = tmp_path / "results"
    frontier = res / "frontier.jsonl"
    frontier.parent.mkdir(parents=True)
    frontier.write_text("")
    cfg["reportgen"]["encoders"], cfg["reportgen"]["sizes"] = ["fake"], [8]
    triage_set(
        cfg, paths["findings"], paths["ct"], paths["mri"], paths["test"], None, res / "set.csv", res / "acuity.csv"
    )
    chosen = pd.read_csv(res / "set.csv")
    assert len(chosen) == 6 and chosen.groupby(["modality", "acuity"]).size().eq(1).all()
    validation = triage(
        cfg,
        gens,
        frontier,
        paths["findings"],
        paths["reports"],
        res / "set.csv",
        res / "acuity.csv",
        tmp_path / "private" / "cache",
        res / "pred.csv",
        res / "val.csv",
    )
    assert validation.passes.all()  # the rule judge reproduces the label-derived acuity of the references
    evaluate(
        cfg,
        gens,
        frontier,
        res / "pred.csv",
        res / "set.csv",
        paths["findings"],
        paths["ct"],
        paths["mri"],
        res / "text.csv",
        res / "triage.csv",
        res / "cost.csv",
        res / "scaling.csv",
    )
    tri = pd.read_csv(res / "triage.csv")
    ref = tri[(tri.model == "reference") & (tri.stratum == "all") & (tri.variant == "indication")]
    assert ref.accuracy.iloc[0] == 1.0
    assert set(pd.read_csv(res / "text.csv").metric) == {"BLEU-2", "ROUGE-L", "METEOR"}
    assert len(pd.read_csv(res / "scaling.csv")) == 1
    for f in res.iterdir():
        assert "Zebra" not in f.read_text(), f"indication text leaked into {f.name}"


def _stop_after(trainer, stage: int, steps: int):
    original = trainer.train_stage

    def patched(st, total, start, optimizer, params):
        if st != stage:
            return original(st, total, start, optimizer, params)
        original(st, min(total, start + steps), start, optimizer, params)
        raise KeyboardInterrupt

    return patched


def _grads(trainer, sids, stage, micro):
    for p in list(trainer.connector.parameters()) + list(trainer.model.parameters()):
        p.grad = None
    loss = trainer.accumulate(sids, stage, micro)
    named = list(trainer.connector.named_parameters()) + list(trainer.model.named_parameters())
    return float(loss), {n: p.grad.clone() for n, p in named if p.grad is not None}


@pytest.mark.parametrize("micro", [1, 3])
def test_micro_batches_accumulate_the_whole_batch_gradient(tmp_path, one_thread, micro):
    """Examples of different answer lengths: micro-batches weighted by the batch's target tokens give the loss and
    gradients of one pass over the whole batch (a plain mean of micro-batch means would not)."""
    paths = make_inputs(tmp_path / "in")
    trainer = _trainer(tiny_config(tmp_path), paths, tmp_path / "out")
    trainer.setup_stage(2)
    sids = trainer.curated[:5]
    lengths = {len(trainer.example(s, 2).labels) for s in sids}
    assert len(lengths) > 1, "the check needs answers of different lengths"
    loss_full, g_full = _grads(trainer, sids, 2, micro=len(sids))
    loss_mb, g_mb = _grads(trainer, sids, 2, micro=micro)
    assert loss_mb == pytest.approx(loss_full, rel=1e-5)
    assert g_full.keys() == g_mb.keys() and len(g_full) > 10
    for n in g_full:
        torch.testing.assert_close(g_mb[n], g_full[n], atol=1e-6, rtol=1e-4, msg=n)
    # the naive alternative (mean of micro-batch means) differs here
    naive = sum(
        float(trainer.accumulate(sids[a : a + micro], 2, micro)) * len(sids[a : a + micro])
        for a in range(0, len(sids), micro)
    ) / len(sids)
    assert abs(naive - loss_full) > 1e-4


def test_gradient_checkpointing_keeps_the_gradients(tmp_path, one_thread):
    paths = make_inputs(tmp_path / "in")
    cfg = tiny_config(tmp_path)
    cfg_ckpt = copy.deepcopy(cfg)
    cfg_ckpt["reportgen"]["lm"]["gradient_checkpointing"] = True
    plain = _trainer(cfg, paths, tmp_path / "a")
    ckpt = _trainer(cfg_ckpt, paths, tmp_path / "b")
    from neurovfm.reportgen.lm import checkpointing_enabled

    assert checkpointing_enabled(ckpt.model) and not checkpointing_enabled(plain.model)
    for t in (plain, ckpt):
        t.setup_stage(2)
        t.model.train()
    sids = plain.curated[:4]
    la, ga = _grads(plain, sids, 2, micro=2)
    lb, gb = _grads(ckpt, sids, 2, micro=2)
    assert la == pytest.approx(lb, rel=1e-6) and ga.keys() == gb.keys()
    for n in ga:
        torch.testing.assert_close(gb[n], ga[n], atol=1e-6, rtol=1e-5, msg=n)


def test_memory_settings_do_not_change_the_resume_fingerprint(tmp_path):
    paths = make_inputs(tmp_path / "in")
    cfg = tiny_config(tmp_path)
    other = copy.deepcopy(cfg)
    other["reportgen"]["stage2"]["micro_batch_size"] = 1
    other["reportgen"]["lm"]["gradient_checkpointing"] = True
    changed = copy.deepcopy(cfg)
    changed["reportgen"]["stage2"]["batch_size"] = 2
    fp = {k: _trainer(c, paths, tmp_path / k).fingerprint for k, c in (("a", cfg), ("b", other), ("c", changed))}
    assert fp["a"] == fp["b"] != fp["c"]


def test_only_stage_two_sees_the_indication(tmp_path, one_thread):
    """Stage 1 maps image features to the findings (the paper's connector pre-training): its prompt never carries
    the indication. Stage 0 (the demo LM's text pretraining) carries it only with ``lm.text_pretrain.indication``
    (the demo's default, ``tests/test_reportgen_aux.py``); here it is off. Stage 2 (and generation) keep it."""
    paths = make_inputs(tmp_path / "in")
    cfg = tiny_config(tmp_path)
    cfg["reportgen"]["lm"]["text_pretrain"]["indication"] = False
    trainer = _trainer(cfg, paths, tmp_path / "out")
    sid = next(s for s in trainer.curated if trainer.indications.get(s))
    text = trainer.indications[sid]
    decoded = {stage: trainer.tokenizer.decode(trainer.example(sid, stage).ids) for stage in (0, 1, 2)}
    assert text in decoded[2]
    assert text not in decoded[1] and text not in decoded[0]
    assert "Indication" not in decoded[1] and "Indication" not in decoded[0]


def test_stage_zero_writes_stage_one_form_for_its_plain_share(tmp_path, one_thread):
    """``lm.text_pretrain.plain_share`` p: that share of stage-0 examples is stage 1's form (no instruction, no
    indication, the findings as one string), the rest stage 2's (instruction, JSON list); the draw is a function of
    (seed, step, study), so a resumed run draws the same, and p 0 never draws the plain form."""
    import json

    from neurovfm.reportgen.prompt import stage1_target

    paths = make_inputs(tmp_path / "in")
    cfg = tiny_config(tmp_path)
    cfg["reportgen"]["lm"]["text_pretrain"]["plain_share"] = 0.5
    trainer = _trainer(cfg, paths, tmp_path / "out")
    sid = next(s for s in trainer.curated if trainer.indications.get(s) and trainer.findings[s]["findings"])
    instruction = cfg["reportgen"]["prompt"]["instruction"]
    plain = trainer.tokenizer.decode(trainer.example(sid, 0, plain=True).ids)
    assert instruction not in plain and "Indication" not in plain and "[" not in plain
    assert stage1_target(trainer.findings[sid]["findings"], "") in plain
    as_json = trainer.tokenizer.decode(trainer.example(sid, 0).ids)
    assert instruction in as_json and json.dumps(trainer.findings[sid]["findings"][0])[:-1] in as_json
    # plain only reaches stage 0: stage 2 keeps its form
    assert instruction in trainer.tokenizer.decode(trainer.example(sid, 2, plain=True).ids)
    draws = [trainer.plain_text(s, step) for s in trainer.pool for step in range(40)]
    assert 0.35 < sum(draws) / len(draws) < 0.65
    again = _trainer(cfg, paths, tmp_path / "again")
    assert draws == [again.plain_text(s, step) for s in trainer.pool for step in range(40)]
    cfg["reportgen"]["lm"]["text_pretrain"]["plain_share"] = 0.0
    none = _trainer(cfg, paths, tmp_path / "none")
    assert not any(none.plain_text(s, step) for s in none.pool for step in range(40))


def test_stage_one_trains_on_every_reported_study_when_asked(tmp_path, one_thread):
    """``stage1.studies``: ``curated`` draws stage 1's batches from the size's curated pairs (steps from their
    count), ``all`` from every reported training study with features, once per epoch, whatever the size; stage 2
    keeps the curated pairs either way, and the label head (when weighted) has a target for every study it sees."""
    import math

    from neurovfm.reportgen.label_head import label_targets
    from neurovfm.reportgen.train import Trainer, training_texts_pool

    paths = make_inputs(tmp_path / "in", n_per_split=12)
    cfg = tiny_config(tmp_path)
    curated = _trainer(cfg, paths, tmp_path / "a")
    assert curated.stage_items(1) == curated.curated == curated.stage_items(2)
    cfg["reportgen"]["stage1"]["studies"] = "all"
    probe = _trainer(cfg, paths, tmp_path / "b")  # (only for its studies, findings and curated draws)
    cfg["reportgen"]["stage1"]["label_loss_weight"] = 1.0
    pool = training_texts_pool(probe.findings, probe.studies)
    labels = label_targets(paths["ct"], paths["mri"], sorted(set(probe.curated) | set(pool)))
    every = Trainer(cfg, probe.studies, probe.findings, probe.indications, probe.curated, tmp_path / "c", labels=labels)
    assert every.stage_items(1) == pool and every.stage_items(2) == every.curated
    assert set(pool) - set(every.curated), "the fixture's curated draws should miss some training study"
    assert set(every.label_targets) == set(pool) | set(every.curated)
    every.run()
    rows = pd.read_csv(tmp_path / "c" / "metrics.csv")
    s1 = cfg["reportgen"]["stage1"]
    assert (rows.stage == 1).sum() == math.ceil(len(pool) * s1["epochs"] / s1["batch_size"])
    assert (rows.stage == 2).sum() == math.ceil(
        len(every.curated) * cfg["reportgen"]["stage2"]["epochs"] / cfg["reportgen"]["stage2"]["batch_size"]
    )


def test_a_checkpoint_of_other_data_is_not_resumed(tmp_path, one_thread):
    """Same settings and study IDs but other findings (a regenerated export): the fingerprint differs, so the
    trainer starts over instead of loading weights whose vocabulary or targets no longer fit."""
    paths = make_inputs(tmp_path / "in")
    trainer = _trainer(tiny_config(tmp_path), paths, tmp_path / "out")
    before = trainer._fingerprint()
    assert trainer._fingerprint() == before
    sid = trainer.curated[0]
    trainer.findings[sid] = {**trainer.findings[sid], "findings": ["An unrelated new finding."]}
    assert trainer._fingerprint() != before
    # the resume guard refuses a checkpoint written under the old fingerprint
    from neurovfm.reportgen.train import CHECKPOINT

    trainer.out.mkdir(parents=True, exist_ok=True)
    torch.save({"fingerprint": before, "stage": 1, "step": 1}, trainer.out / CHECKPOINT)
    trainer.fingerprint = trainer._fingerprint()
    assert trainer._resume_state() is None


def test_a_run_stopped_in_stage_one_keeps_the_stage_zero_lm(tmp_path, one_thread):
    """Stage 1 freezes the demo LM that stage 0 trained: its checkpoint must still carry those weights (before the
    fix a run killed in stage 1 resumed with the seeded, untrained LM)."""
    paths = make_inputs(tmp_path / "in")
    full, resumed = full_and_resumed(_trainer, tiny_config(tmp_path), paths, tmp_path, stage=1, steps=1)
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(v, resumed.model.state_dict()[k], atol=0, rtol=0, msg=k)
    assert [r["loss"] for r in full.rows] == [r["loss"] for r in resumed.rows]
