"""Study-level attentive probes over packed bags of frozen tokens."""

import pytest
import torch

from neurovfm.models.packing import pack, unpack
from neurovfm.models.probes import PROBE_KINDS, ClassifyThenAggregate, GatedAttentionPool, build_probe, segment_softmax

D, K = 16, 3
LENGTHS = [5, 1, 9, 2]


def bags(seed=0, lengths=LENGTHS, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, D, generator=g, dtype=dtype) for n in lengths]


def make(kind, seed=0):
    torch.manual_seed(seed)
    probe = build_probe(kind, D, K, hidden=12, attn_hidden=10).double().eval()
    if kind == "classify_then_aggregate":  # trained-like scale / bias so they matter in the checks
        with torch.no_grad():
            probe.scale.copy_(torch.tensor([0.5, 2.0, -1.5]))
            probe.bias.copy_(torch.tensor([0.1, -0.3, 0.7]))
    return probe


def attn_width(kind):
    return K if kind == "classify_then_aggregate" else 1


@pytest.mark.parametrize("kind", PROBE_KINDS)
def test_shapes(kind):
    x, cu, _ = pack(bags())
    logits, attn = make(kind)(x, cu)
    assert logits.shape == (len(LENGTHS), K)
    assert attn.shape == (sum(LENGTHS), attn_width(kind))
    assert torch.isfinite(logits).all() and torch.isfinite(attn).all()


@pytest.mark.parametrize("kind", PROBE_KINDS)
def test_study_logits_equal_forward(kind):
    """Prediction's path (logits alone, per-study softmax over contiguous rows) gives forward's logits, an empty
    study included (forward: zeros before scale and bias)."""
    probe = make(kind)
    x, cu, _ = pack(bags(2, [4, 7, 1, 3]))
    torch.testing.assert_close(probe.study_logits(x, cu), probe(x, cu)[0], atol=1e-12, rtol=0)
    empty = torch.tensor([0, 4, 4, 11, 12, 15], dtype=cu.dtype)  # second study has no token
    if kind == "classify_then_aggregate":
        got, want = probe.study_logits(x, empty), probe(x, empty)[0]
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
        torch.testing.assert_close(got[1], probe.bias.detach(), atol=0, rtol=0)
    moved = make(kind)  # positive control: the comparison sees a changed weight
    with torch.no_grad():
        next(moved.parameters()).add_(1e-3)
    assert (moved.study_logits(x, cu) - probe(x, cu)[0]).abs().max() > 1e-6


@pytest.mark.parametrize("kind", PROBE_KINDS)
def test_attention_normalised_per_study(kind):
    x, cu, _ = pack(bags())
    _, attn = make(kind)(x, cu)
    for a in unpack(attn, cu):
        assert (a >= 0).all()
        torch.testing.assert_close(a.sum(0), torch.ones(attn.shape[1], dtype=a.dtype), atol=1e-6, rtol=0)
    single = unpack(attn, cu)[1]  # 1-token study: all its attention on that token
    torch.testing.assert_close(single, torch.ones_like(single), atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", PROBE_KINDS)
def test_packed_equals_each_study_alone(kind):
    probe, studies = make(kind), bags(1)
    x, cu, _ = pack(studies)
    logits, attn = probe(x, cu)
    for i, (s, a) in enumerate(zip(studies, unpack(attn, cu))):
        l1, a1 = probe(*pack([s])[:2])
        torch.testing.assert_close(logits[i : i + 1], l1, atol=1e-6, rtol=0)
        torch.testing.assert_close(a, a1, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", PROBE_KINDS)
def test_permutation_within_study_invariant(kind):
    probe, studies = make(kind), bags(2)
    x, cu, _ = pack(studies)
    logits, attn = probe(x, cu)
    g = torch.Generator().manual_seed(3)
    perms = [torch.randperm(s.shape[0], generator=g) for s in studies]
    xp, cup, _ = pack([s[p] for s, p in zip(studies, perms)])
    logits_p, attn_p = probe(xp, cup)
    torch.testing.assert_close(logits_p, logits, atol=1e-9, rtol=0)
    for a, ap, p in zip(unpack(attn, cu), unpack(attn_p, cup), perms):
        torch.testing.assert_close(ap, a[p], atol=1e-12, rtol=0)  # attention follows its token


@pytest.mark.parametrize("kind", PROBE_KINDS)
def test_studies_do_not_interact(kind):
    probe, studies = make(kind), bags(4)
    logits, _ = probe(*pack(studies)[:2])
    changed = list(studies)
    changed[2] = 100.0 * torch.randn(7, D, dtype=torch.float64)  # other length, wild values
    logits_c, _ = probe(*pack(changed)[:2])
    keep = [0, 1, 3]
    torch.testing.assert_close(logits_c[keep], logits[keep], atol=1e-9, rtol=0)
    assert not torch.allclose(logits_c[2], logits[2])


def test_classify_then_aggregate_hand_computation():
    probe, studies = make("classify_then_aggregate"), bags(5)
    logits, _ = probe(*pack(studies)[:2])
    for i, s in enumerate(studies):
        alpha = torch.softmax(probe.attention_scores(s), dim=0)  # per class over the study's tokens
        expected = (alpha * probe.token_logits(s)).sum(0) * probe.scale + probe.bias
        torch.testing.assert_close(logits[i], expected, atol=1e-9, rtol=0)


def test_gated_attention_pool_hand_computation():
    probe, studies = make("gated_attention"), bags(6)
    logits, _ = probe(*pack(studies)[:2])
    for i, s in enumerate(studies):
        alpha = torch.softmax(probe.attention_scores(s), dim=0)  # [L, 1]
        expected = probe.head(probe.norm((alpha * s).sum(0)))
        torch.testing.assert_close(logits[i], expected, atol=1e-9, rtol=0)


@pytest.mark.parametrize("kind", PROBE_KINDS)
def test_gradients_reach_both_networks(kind):
    """Every parameter that can change the logits receives a gradient.

    The scorer's output bias ``attention.W.bias`` cannot: each attention column goes through a softmax over the
    study's tokens, which is invariant to adding a constant, so its gradient is zero in exact arithmetic and only
    rounding decides whether float sums leave a tiny non-zero value. It is checked for what is true instead: a
    gradient that is zero to rounding, and logits that do not move when it is shifted.
    """
    probe = make(kind).train()
    x, cu, _ = pack(bags(7))
    logits, _ = probe(x, cu)
    target = torch.randint(0, 2, logits.shape, generator=torch.Generator().manual_seed(0)).double()
    torch.nn.functional.binary_cross_entropy_with_logits(logits, target).backward()
    other = probe.classifier if kind == "classify_then_aggregate" else probe.head
    shift_invariant = {"W.bias"}
    for net in (probe.attention, other):
        for name, p in net.named_parameters():
            assert p.grad is not None, name
            if net is probe.attention and name in shift_invariant:
                scale = probe.attention.W.weight.grad.abs().max()
                assert p.grad.abs().max() <= 1e-12 * max(1.0, float(scale)), name
            else:
                assert p.grad.abs().sum() > 0, name
    if kind == "classify_then_aggregate":
        assert probe.scale.grad.abs().sum() > 0 and probe.bias.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", PROBE_KINDS)
def test_attention_output_bias_is_shift_invariant(kind):
    """Why the scorer's output bias gets no gradient: shifting it leaves every logit and attention weight as is,
    while shifting a weight that reaches the scores does change them (the positive control)."""
    probe = make(kind)
    x, cu, _ = pack(bags(3))
    logits, attn = probe(x, cu)
    with torch.no_grad():
        probe.attention.W.bias.add_(3.7)
    shifted_logits, shifted_attn = probe(x, cu)
    torch.testing.assert_close(shifted_logits, logits, atol=1e-12, rtol=0)
    torch.testing.assert_close(shifted_attn, attn, atol=1e-12, rtol=0)
    with torch.no_grad():
        probe.attention.W.weight.mul_(3.0)
    moved_logits, moved_attn = probe(x, cu)
    assert (moved_attn - attn).abs().max() > 1e-3
    assert (moved_logits - logits).abs().max() > 1e-6


@pytest.mark.parametrize("kind", PROBE_KINDS)
def test_identical_tokens_give_uniform_attention(kind):
    probe = make(kind)
    row = torch.randn(1, D, dtype=torch.float64)
    studies = [row.expand(6, D).clone(), bags(8, [4])[0]]
    _, attn = probe(*pack(studies)[:2])
    a = unpack(attn, pack(studies)[1])[0]
    torch.testing.assert_close(a, torch.full_like(a, 1 / 6), atol=1e-12, rtol=0)


def test_segment_softmax_stable_for_large_scores():
    scores = torch.tensor([[1000.0], [1001.0], [-1000.0]], dtype=torch.float64)
    cu = torch.tensor([0, 2, 3], dtype=torch.int32)
    out = segment_softmax(scores, cu)
    torch.testing.assert_close(out[:2, 0], torch.softmax(scores[:2, 0], 0))
    assert out[2, 0] == 1.0


def test_float32_default_modules():
    probe = ClassifyThenAggregate(D, K)
    pool = GatedAttentionPool(D, K)
    x, cu, _ = pack(bags(9, dtype=torch.float32))
    assert probe(x, cu)[0].dtype == torch.float32 and pool(x, cu)[0].shape == (len(LENGTHS), K)


def test_build_probe_kinds_and_errors():
    assert isinstance(build_probe("classify_then_aggregate", D, K), ClassifyThenAggregate)
    assert isinstance(build_probe("gated_attention", D, K, dropout=0.1), GatedAttentionPool)
    with pytest.raises(ValueError, match="classify_then_aggregate.*gated_attention"):
        build_probe("mean", D, K)


def test_bad_pack_rejected():
    x = torch.randn(5, D)
    with pytest.raises(ValueError):
        ClassifyThenAggregate(D, K)(x, torch.tensor([0, 2, 4], dtype=torch.int32))
