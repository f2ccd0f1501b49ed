"""Training aids of the demo report generator: the auxiliary label loss on the visual tokens and indication dropout
(both off in the paper profile). The label loss must reach the connector, accumulate over micro-batches like the
token loss, resume exactly, and never be exported; indication dropout must be deterministic per (seed, step,
study)."""

from __future__ import annotations

import copy

import pytest
import torch

from reportgen_fixtures import make_inputs, tiny_config


def _trainer(cfg, paths, out, with_labels: bool = True):
    from neurovfm.reportgen.data import StudyTokens, load_findings, load_indications
    from neurovfm.reportgen.label_head import label_targets
    from neurovfm.reportgen.run import curated_ids, training_pool
    from neurovfm.reportgen.train import Trainer

    studies = StudyTokens(paths["train"], cfg["reportgen"])
    findings = load_findings(paths["findings"])
    curated = curated_ids(cfg, training_pool(findings, studies), paths["ct"], paths["mri"], 8)
    labels = label_targets(paths["ct"], paths["mri"], curated) if with_labels else None
    return Trainer(cfg, studies, findings, load_indications(paths["reports"]), curated, out, labels=labels)


def _cfg(tmp_path, w1=1.0, w2=0.0, drop=0.0):
    cfg = tiny_config(tmp_path)
    cfg = copy.deepcopy(cfg)
    cfg["reportgen"]["stage1"]["label_loss_weight"] = w1
    cfg["reportgen"]["stage2"]["label_loss_weight"] = w2
    cfg["reportgen"]["stage2"]["indication_dropout"] = drop
    return cfg


def _grads(trainer, sids, stage, micro):
    params = list(trainer.connector.named_parameters())
    if trainer.label_head is not None:
        params += [(f"head.{n}", p) for n, p in trainer.label_head.named_parameters()]
    for _, p in params:
        p.grad = None
    loss = trainer.accumulate(sids, stage, micro)
    return float(loss), {n: p.grad.clone() for n, p in params if p.grad is not None}


def _norm(grads, prefix):
    return float(torch.sqrt(sum((g.float() ** 2).sum() for n, g in grads.items() if n.startswith(prefix))))


def test_the_label_loss_reaches_the_connector(tmp_path, one_thread):
    paths = make_inputs(tmp_path / "in")
    plain = _trainer(_cfg(tmp_path, w1=0.0), paths, tmp_path / "a", with_labels=False)
    aided = _trainer(_cfg(tmp_path, w1=5.0), paths, tmp_path / "b")
    assert plain.label_head is None and aided.label_head is not None
    sids = aided.curated[:4]
    for t in (plain, aided):
        t.setup_stage(1)
    loss_plain, g_plain = _grads(plain, sids, 1, micro=4)
    loss_aided, g_aided = _grads(aided, sids, 1, micro=4)
    assert loss_aided > loss_plain  # the weighted BCE is added to the token loss
    assert _norm(g_aided, "head.") > 0
    # the same connector weights (same seed): the auxiliary loss adds gradient into the resampler
    assert _norm(g_aided, "perceiver") > 1.5 * _norm(g_plain, "perceiver")


@pytest.mark.parametrize("micro", [1, 3])
def test_micro_batches_accumulate_the_label_loss(tmp_path, one_thread, micro):
    paths = make_inputs(tmp_path / "in")
    trainer = _trainer(_cfg(tmp_path, w1=1.0, w2=2.0), paths, tmp_path / "out")
    trainer.setup_stage(2)
    sids = trainer.curated[:5]
    loss_full, g_full = _grads(trainer, sids, 2, micro=len(sids))
    loss_mb, g_mb = _grads(trainer, sids, 2, micro=micro)
    assert loss_mb == pytest.approx(loss_full, rel=1e-5)
    assert g_full.keys() == g_mb.keys() and any(n.startswith("head.") for n in g_full)
    for n in g_full:
        torch.testing.assert_close(g_mb[n], g_full[n], atol=1e-6, rtol=1e-4, msg=n)


def test_the_label_head_resumes_exactly_and_is_not_exported(tmp_path, one_thread):
    from test_reportgen_model import full_and_resumed

    paths = make_inputs(tmp_path / "in")
    full, resumed = full_and_resumed(_trainer, _cfg(tmp_path, w1=1.0, w2=0.5), paths, tmp_path, stage=1, steps=1)
    for k, v in full.label_head.state_dict().items():
        torch.testing.assert_close(v, resumed.label_head.state_dict()[k], atol=0, rtol=0)
    for k, v in full.connector.state_dict().items():
        torch.testing.assert_close(v, resumed.connector.state_dict()[k], atol=0, rtol=0)
    assert [r["loss"] for r in full.rows] == [r["loss"] for r in resumed.rows]
    exported = torch.load(tmp_path / "full" / "connector.pt", weights_only=False)
    assert not any("head" in k for k in exported["state_dict"])
    # the aid is part of what the weights depend on: another weight does not resume this checkpoint
    assert _trainer(_cfg(tmp_path, w1=2.0, w2=0.5), paths, tmp_path / "part").fingerprint != resumed.fingerprint


def test_a_label_loss_without_labels_is_refused(tmp_path):
    paths = make_inputs(tmp_path / "in")
    with pytest.raises(ValueError, match="label tables"):
        _trainer(_cfg(tmp_path, w1=1.0), paths, tmp_path / "out", with_labels=False)


def test_indication_dropout_is_a_function_of_seed_step_and_study(tmp_path):
    paths = make_inputs(tmp_path / "in")
    never = _trainer(_cfg(tmp_path, w1=0.0, drop=0.0), paths, tmp_path / "a", with_labels=False)
    always = _trainer(_cfg(tmp_path, w1=0.0, drop=1.0), paths, tmp_path / "b", with_labels=False)
    half = _trainer(_cfg(tmp_path, w1=0.0, drop=0.5), paths, tmp_path / "c", with_labels=False)
    again = _trainer(_cfg(tmp_path, w1=0.0, drop=0.5), paths, tmp_path / "d", with_labels=False)
    pairs = [(s, step) for s in sorted(set(half.curated)) for step in range(40)]
    assert all(never.keeps_indication(s, k) for s, k in pairs)
    assert not any(always.keeps_indication(s, k) for s, k in pairs)
    kept = [half.keeps_indication(s, k) for s, k in pairs]
    assert kept == [again.keeps_indication(s, k) for s, k in pairs]
    assert 0.35 < sum(kept) / len(kept) < 0.65
    sid = next(s for s in half.curated if half.indications.get(s))
    step = next(k for k in range(40) if not half.keeps_indication(sid, k))
    assert half.indications[sid] in half.tokenizer.decode(half.example(sid, 2, True).ids)
    assert half.indications[sid] not in half.tokenizer.decode(
        half.example(sid, 2, half.keeps_indication(sid, step)).ids
    )


def test_stage_zero_reads_the_indication_only_when_asked(tmp_path):
    paths = make_inputs(tmp_path / "in")
    cfg = _cfg(tmp_path, w1=0.0)
    cfg["reportgen"]["lm"]["text_pretrain"]["indication"] = False
    plain = _trainer(cfg, paths, tmp_path / "a", with_labels=False)
    cfg = _cfg(tmp_path, w1=0.0)
    cfg["reportgen"]["lm"]["text_pretrain"]["indication"] = True
    told = _trainer(cfg, paths, tmp_path / "b", with_labels=False)
    sid = next(s for s in plain.curated if plain.indications.get(s))
    text = plain.indications[sid]
    assert text not in plain.tokenizer.decode(plain.example(sid, 0).ids)
    assert text in told.tokenizer.decode(told.example(sid, 0).ids)
    assert text not in told.tokenizer.decode(told.example(sid, 1).ids)  # stage 1 stays image-only
    assert plain.fingerprint != told.fingerprint
