"""3D ViT encoder on packed volumes."""

import pytest
import torch

from neurovfm.models import VIT_SIZES, build_encoder, pack, patchify

TINY = dict(patch_size=(2, 4, 4), embed_dim=48, depth=3, num_heads=4)


def volumes(seed=0, shapes=((4, 8, 12), (2, 4, 4), (6, 8, 8))):
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in shapes:
        p, c = patchify(torch.randn(1, *s, generator=g), TINY["patch_size"])
        out.append((p, c))
    return out


def encode(model, vols):
    patches, cu, max_len = pack([p for p, _ in vols])
    coords = torch.cat([c for _, c in vols])
    return model(patches, coords, cu, max_len), cu


def test_output_shape_finite_and_packing_independent():
    torch.manual_seed(0)
    model = build_encoder("tiny", **TINY).eval()
    vols = volumes()
    out, cu = encode(model, vols)
    assert out.shape == (sum(p.shape[0] for p, _ in vols), 48) and torch.isfinite(out).all()
    # final LayerNorm (unit weight at init): every token has ~zero mean and unit variance
    torch.testing.assert_close(out.mean(-1), torch.zeros(out.shape[0]), atol=1e-5, rtol=0)
    # each volume encoded alone gives the same tokens
    for i, vol in enumerate(vols):
        alone, _ = encode(model, [vol])
        torch.testing.assert_close(out[cu[i] : cu[i + 1]], alone, atol=1e-5, rtol=1e-5)


def test_permuting_volumes_permutes_outputs():
    torch.manual_seed(0)
    model = build_encoder("tiny", **TINY).eval()
    vols = volumes()
    out, cu = encode(model, vols)
    perm = [2, 0, 1]
    out_p, cu_p = encode(model, [vols[i] for i in perm])
    for j, i in enumerate(perm):
        torch.testing.assert_close(out_p[cu_p[j] : cu_p[j + 1]], out[cu[i] : cu[i + 1]], atol=1e-5, rtol=1e-5)


def test_position_encoding_matters():
    torch.manual_seed(0)
    model = build_encoder("tiny", **TINY).eval()
    p, c = volumes()[0]
    cu = torch.tensor([0, p.shape[0]], dtype=torch.int32)
    a = model(p, c, cu, p.shape[0])
    b = model(p, c + torch.tensor([1, 0, 0]), cu, p.shape[0])
    assert not torch.allclose(a, b, atol=1e-3)


def test_gradient_checkpointing_same_output_and_grads():
    vols = volumes()
    outs, grads = [], []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = build_encoder("tiny", **TINY, drop_path_rate=0.2, grad_checkpointing=ckpt).train()
        torch.manual_seed(1)  # same drop-path draws in both runs
        out, _ = encode(model, vols)
        out.square().mean().backward()
        outs.append(out.detach())
        grads.append([p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-6, rtol=1e-6)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert all(g.abs().sum() > 0 for g in grads[0])


def test_drop_path_drops_whole_volumes_in_training_only():
    torch.manual_seed(0)
    model = build_encoder("tiny", **TINY, drop_path_rate=0.5)
    vols = volumes()
    model.eval()
    a, _ = encode(model, vols)
    b, _ = encode(model, vols)
    assert torch.equal(a, b)
    blk = model.blocks[-1].drop_path
    blk.train()
    x = torch.ones(12, 3)
    cu = torch.tensor([0, 2, 5, 12], dtype=torch.int32)
    torch.manual_seed(3)
    y = blk(x, cu)
    for s, e in zip(cu[:-1].tolist(), cu[1:].tolist()):
        assert len(torch.unique(y[s:e])) == 1 and y[s, 0].item() in (0.0, 2.0)


def test_init_follows_vit_recipe():
    torch.manual_seed(0)
    model = build_encoder("small", embed_dim=96, num_heads=4)  # 12 blocks, narrow for speed
    blocks = model.blocks
    qkv_std = blocks[0].attn.qkv.weight.std().item()
    assert 0.015 < qkv_std < 0.02  # truncated at +-2 std: std about 0.88 x 0.02
    for layer_id in (1, 4, 12):
        ratio = blocks[layer_id - 1].mlp.fc2.weight.std().item() / qkv_std
        assert ratio == pytest.approx((2 * layer_id) ** -0.5, rel=0.05)
    assert blocks[0].attn.qkv.bias is not None and blocks[0].norm1.eps == 1e-6
    assert len(blocks) == 12 and blocks[0].mlp.fc1.out_features == 4 * 96


def test_sizes_and_parameter_counts():
    expected_m = {"micro": 0.27, "tiny": 0.92, "small": 21.7, "medium": 38.4, "base": 85.8}
    assert set(VIT_SIZES) == set(expected_m)
    assert VIT_SIZES["base"] == dict(embed_dim=768, depth=12, num_heads=12)
    for size, millions in expected_m.items():
        with torch.device("meta"):  # shapes only: no memory, no init cost
            n = sum(p.numel() for p in build_encoder(size).parameters())
        assert n / 1e6 == pytest.approx(millions, abs=0.05)
    with pytest.raises(ValueError, match="unknown encoder size"):
        build_encoder("huge")
