"""Packed varlen attention: every back end against plain per-volume softmax attention."""

import math

import pytest
import torch

from neurovfm.models import attention as attn_mod
from neurovfm.models.attention import Attention, available_backends, choose_backend, varlen_attention
from neurovfm.models.packing import block_diag_mask, cu_seqlens_from_lengths, interleave, pack, segment_ids, unpack

LENGTHS = [5, 1, 17, 9]
H, DH = 3, 8
CPU_BACKENDS = available_backends("cpu", torch.float32)


def reference(q, k, v, lengths):
    """Softmax attention computed volume by volume in float64."""
    outs, start = [], 0
    for n in lengths:
        qi, ki, vi = (t[start : start + n].double().transpose(0, 1) for t in (q, k, v))
        w = torch.softmax(qi @ ki.transpose(1, 2) / math.sqrt(q.shape[-1]), -1)
        outs.append((w @ vi).transpose(0, 1))
        start += n
    return torch.cat(outs).to(q.dtype)


def qkv(seed=0, lengths=LENGTHS):
    g = torch.Generator().manual_seed(seed)
    n = sum(lengths)
    return [torch.randn(n, H, DH, generator=g, requires_grad=True) for _ in range(3)]


def test_cpu_has_both_sdpa_backends():
    assert CPU_BACKENDS == ["sdpa_masked", "sdpa_loop"]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_backend_matches_per_volume_reference(backend):
    q, k, v = qkv()
    cu, max_len = cu_seqlens_from_lengths(LENGTHS)
    out = varlen_attention(q, k, v, cu, max_len, backend=backend)
    ref = reference(q, k, v, LENGTHS)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # gradients agree with the reference's
    g = torch.randn_like(out)
    grads = torch.autograd.grad((out * g).sum(), (q, k, v))
    ref_grads = torch.autograd.grad((ref * g).sum(), (q, k, v))
    for a, b in zip(grads, ref_grads):
        assert torch.isfinite(a).all() and a.abs().sum() > 0
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_no_cross_volume_leakage(backend):
    q, k, v = (t.detach() for t in qkv())
    cu, max_len = cu_seqlens_from_lengths(LENGTHS)
    out = varlen_attention(q, k, v, cu, max_len, backend=backend)
    s, e = LENGTHS[0] + LENGTHS[1], LENGTHS[0] + LENGTHS[1] + LENGTHS[2]  # volume 2
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    for t in (q2, k2, v2):
        t[s:e] = torch.randn(e - s, H, DH) * 5
    out2 = varlen_attention(q2, k2, v2, cu, max_len, backend=backend)
    assert torch.equal(out[:s], out2[:s]) and torch.equal(out[e:], out2[e:])
    assert not torch.allclose(out[s:e], out2[s:e])


def test_unavailable_or_unknown_backend_raises():
    q, k, v = (t.detach() for t in qkv())
    cu, max_len = cu_seqlens_from_lengths(LENGTHS)
    for name in ("flash_attn", "torch_varlen"):  # CUDA-only; this test machine runs on CPU tensors
        with pytest.raises(RuntimeError, match=name):
            varlen_attention(q, k, v, cu, max_len, backend=name)
    with pytest.raises(RuntimeError, match="unknown"):
        varlen_attention(q, k, v, cu, max_len, backend="xformers")


def test_missing_flash_attn_is_reported(monkeypatch):
    monkeypatch.setattr(attn_mod, "_flash_attn_varlen", lambda: None)
    assert "flash_attn" not in available_backends()
    assert "not installed" in attn_mod._unusable_reason("flash_attn", None, None)


def test_auto_choice_switches_to_loop_for_large_packs():
    q = torch.zeros(100, H, DH)
    assert choose_backend(q, masked_max_tokens=100) == "sdpa_masked"
    assert choose_backend(q, masked_max_tokens=99) == "sdpa_loop"


def test_attention_module_equals_manual_heads():
    torch.manual_seed(0)
    dim = H * DH
    m = Attention(dim, H)
    x = torch.randn(sum(LENGTHS), dim)
    cu, max_len = cu_seqlens_from_lengths(LENGTHS)
    q, k, v = m.qkv(x).reshape(-1, 3, H, DH).unbind(1)
    ref = m.proj(reference(q, k, v, LENGTHS).reshape(-1, dim))
    torch.testing.assert_close(m(x, cu, max_len), ref, atol=1e-5, rtol=1e-5)


def test_packing_helpers_match_naive():
    cu, max_len = cu_seqlens_from_lengths(LENGTHS)
    assert cu.dtype == torch.int32 and cu.tolist() == [0, 5, 6, 23, 32] and max_len == 17
    seg = segment_ids(cu)
    naive = torch.tensor([[seg[i] == seg[j] for j in range(len(seg))] for i in range(len(seg))])
    assert torch.equal(block_diag_mask(cu), naive)
    parts = [torch.randn(n, 2) for n in LENGTHS]
    packed, cu2, _ = pack(parts)
    assert torch.equal(cu2, cu) and all(torch.equal(a, b) for a, b in zip(unpack(packed, cu2), parts))


def test_interleave_matches_naive_concatenation():
    la, lb = [3, 0, 4], [2, 5, 1]
    a_parts = [torch.randn(n, 2) for n in la]
    b_parts = [torch.randn(n, 2) for n in lb]
    a, cu_a, _ = pack(a_parts)
    b, cu_b, _ = pack(b_parts)
    x, cu, max_len, idx_a, idx_b = interleave(a, cu_a, b, cu_b)
    naive, cu_n, max_n = pack([torch.cat([pa, pb]) for pa, pb in zip(a_parts, b_parts)])
    assert torch.equal(x, naive) and torch.equal(cu, cu_n) and max_len == max_n
    assert torch.equal(x[idx_a], a) and torch.equal(x[idx_b], b)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_empty_sequence_in_pack(backend):
    lengths = [3, 0, 4]
    q, k, v = (t.detach() for t in qkv(lengths=lengths))
    cu, max_len = cu_seqlens_from_lengths(lengths)
    out = varlen_attention(q, k, v, cu, max_len, backend=backend)
    torch.testing.assert_close(out, reference(q, k, v, lengths), atol=1e-5, rtol=1e-5)


def test_loop_calls_sdpa_with_a_batch_axis(monkeypatch):
    """torch runs its fused CPU kernel only for [B, H, n, Dh] inputs; a 3D call silently takes the unfused math path
    (6x slower forward, benchmarks/attention_cpu.py). Every per-volume call must carry the batch axis."""
    seen = []
    real = attn_mod.F.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        seen.append((q.ndim, k.ndim, v.ndim))
        return real(q, k, v, *args, **kwargs)

    monkeypatch.setattr(attn_mod.F, "scaled_dot_product_attention", spy)
    q, k, v = qkv()
    cu, max_len = cu_seqlens_from_lengths(LENGTHS)
    varlen_attention(q, k, v, cu, max_len, backend="sdpa_loop").sum().backward()
    assert len(seen) == len(LENGTHS)
    assert set(seen) == {(4, 4, 4)}


def test_equal_length_runs():
    assert attn_mod.equal_length_runs([]) == []
    assert attn_mod.equal_length_runs([4, 4, 4, 2, 4, 0, 0, 3]) == [(4, 3), (2, 1), (4, 1), (0, 2), (3, 1)]


def test_runs_of_equal_lengths_share_one_call_bit_for_bit(monkeypatch):
    """Consecutive volumes of one length (HLIP's, cut to max_tokens) go through one [G, H, n, Dh] call; outputs and
    gradients equal those of one call per volume bit for bit (an empty volume included)."""
    lengths = [6, 6, 6, 2, 0, 6, 6, 9]
    cu, max_len = cu_seqlens_from_lengths(lengths)

    def run(grouping):
        monkeypatch.setattr(attn_mod, "equal_length_runs", grouping)
        q, k, v = qkv(seed=4, lengths=lengths)
        out = varlen_attention(q, k, v, cu, max_len, backend="sdpa_loop")
        return out.detach(), torch.autograd.grad((out * torch.arange(out.numel()).view_as(out)).sum(), (q, k, v))

    calls = []
    real = attn_mod.F.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        calls.append(q.shape[0])
        return real(q, k, v, *args, **kwargs)

    monkeypatch.setattr(attn_mod.F, "scaled_dot_product_attention", spy)
    grouped = run(attn_mod.equal_length_runs)
    assert calls == [3, 1, 2, 1]  # the runs of 6, the 2, the second run of 6, the 9 (the empty one makes no call)
    single = run(lambda ls: [(n, 1) for n in ls])
    assert torch.equal(grouped[0], single[0]) and all(torch.equal(a, b) for a, b in zip(grouped[1], single[1]))
    q, k, v = (t.detach() for t in qkv(seed=4, lengths=lengths))
    torch.testing.assert_close(grouped[0], reference(q, k, v, lengths), atol=1e-5, rtol=1e-5)
