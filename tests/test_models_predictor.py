"""Vol-JEPA predictor on packed context / target sets."""

import torch

from neurovfm.models import Predictor, pack

D, PD = 32, 24


def sample(seed, n_ctx, n_tgt):
    g = torch.Generator().manual_seed(seed)
    coords = torch.randperm(6 * 6 * 6, generator=g)[: n_ctx + n_tgt]
    coords = torch.stack([coords // 36, (coords // 6) % 6, coords % 6], -1)
    return torch.randn(n_ctx, D, generator=g), coords[:n_ctx], coords[n_ctx:]


def make(seed=0):
    torch.manual_seed(seed)
    pred = Predictor(D, PD, depth=2, num_heads=4).eval()
    torch.nn.init.normal_(pred.mask_token, std=0.02)  # a trained-like token, so targets are not all alike
    return pred


def run(pred, samples):
    ctx, ctx_cu, _ = pack([s[0] for s in samples])
    ctx_coords = torch.cat([s[1] for s in samples])
    tgt_coords, tgt_cu, _ = pack([s[2] for s in samples])
    return pred(ctx, ctx_coords, ctx_cu, tgt_coords, tgt_cu), tgt_cu


def naive(pred, ctx, ctx_coords, tgt_coords):
    """One sample, one sequence, built by hand."""
    from neurovfm.models import sincos_3d

    x = torch.cat([pred.predictor_embed(ctx) + sincos_3d(ctx_coords, PD), pred.mask_token + sincos_3d(tgt_coords, PD)])
    cu = torch.tensor([0, x.shape[0]], dtype=torch.int32)
    for blk in pred.blocks:
        x = blk(x, cu, x.shape[0])
    return pred.predictor_proj(pred.norm(x[ctx.shape[0] :]))


def test_mask_token_zero_init():
    assert torch.equal(Predictor(D, PD, 1, 4).mask_token, torch.zeros(1, PD))


def test_shape_order_and_match_naive():
    pred = make()
    samples = [sample(0, 5, 7), sample(1, 3, 2), sample(2, 9, 4)]
    out, cu = run(pred, samples)
    assert out.shape == (13, D)
    for i, (ctx, cc, tc) in enumerate(samples):
        torch.testing.assert_close(out[cu[i] : cu[i + 1]], naive(pred, ctx, cc, tc), atol=1e-5, rtol=1e-5)
    # reordering one sample's targets reorders its predictions the same way
    ctx, cc, tc = samples[0]
    perm = torch.tensor([6, 2, 0, 5, 1, 3, 4])
    out_p, _ = run(pred, [(ctx, cc, tc[perm])] + samples[1:])
    torch.testing.assert_close(out_p[:7], out[:7][perm], atol=1e-5, rtol=1e-5)


def test_samples_do_not_see_each_other():
    pred = make()
    samples = [sample(0, 5, 7), sample(1, 3, 2), sample(2, 9, 4)]
    out, _ = run(pred, samples)
    ctx, cc, tc = samples[1]
    changed = [samples[0], (torch.randn_like(ctx) * 3, cc, tc), samples[2]]
    out2, _ = run(pred, changed)
    assert torch.equal(out[:7], out2[:7]) and torch.equal(out[9:], out2[9:])
    assert not torch.allclose(out[7:9], out2[7:9])


def test_gradients_reach_context_and_mask_token():
    pred = make().train()
    samples = [sample(0, 5, 7), sample(1, 3, 2)]
    ctx = samples[0][0].clone().requires_grad_(True)
    out, _ = run(pred, [(ctx, *samples[0][1:]), samples[1]])
    out.square().sum().backward()
    assert ctx.grad.abs().sum() > 0 and pred.mask_token.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in pred.parameters())
