"""Patchify / unpatchify and the 3D sine-cosine position encoding."""

import pytest
import torch

from neurovfm.models import PatchEmbed3D, patchify, sincos_3d, unpatchify

PATCH = (4, 16, 16)


def test_patchify_round_trip_and_coords():
    vol = torch.randn(2, 8, 32, 48)
    patches, coords = patchify(vol, PATCH)
    assert patches.shape == (2 * 2 * 3, 2 * 4 * 16 * 16) and coords.dtype == torch.long
    # C order over (z, y, x)
    assert coords.tolist()[:4] == [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 1, 0]]
    for row, (z, y, x) in zip(patches, coords.tolist()):
        block = vol[:, z * 4 : (z + 1) * 4, y * 16 : (y + 1) * 16, x * 16 : (x + 1) * 16]
        assert torch.equal(row, block.reshape(-1))
    assert torch.equal(unpatchify(patches, (2, 2, 3), PATCH, 2), vol)


def test_patchify_rejects_non_multiples():
    with pytest.raises(ValueError, match="multiple"):
        patchify(torch.zeros(1, 6, 32, 32), PATCH)


def test_patch_embed_is_linear_on_1024_values():
    emb = PatchEmbed3D(PATCH, in_chans=1, embed_dim=32)
    assert emb.patch_dim == 1024
    x = torch.randn(5, 1024)
    torch.testing.assert_close(emb(x), x @ emb.proj.weight.T + emb.proj.bias)
    with pytest.raises(ValueError):
        emb(torch.randn(5, 1000))


def test_sincos_distinct_bounded_and_defined_for_large_coords():
    grid = torch.stack(torch.meshgrid(*(torch.arange(12),) * 3, indexing="ij"), -1).reshape(-1, 3)
    for dim in (128, 130, 768):
        pe = sincos_3d(grid, dim)
        assert pe.shape == (grid.shape[0], dim) and pe.dtype == torch.float32
        assert torch.cdist(pe, pe).add(torch.eye(len(pe)) * 1e3).min() > 1e-3  # all codes distinct
        if dim % 6:
            assert torch.all(pe[:, 6 * (dim // 6) :] == 0)
    big = torch.tensor([[0, 0, 0], [5000, 70000, 123456], [5000, 70000, 123457]])
    pe = sincos_3d(big, 96)
    assert torch.isfinite(pe).all() and pe.abs().max() <= 1
    assert (pe[1] - pe[2]).abs().max() > 1e-2


def test_sincos_axis_layout():
    """Each axis owns its own block: changing z only changes the z channels."""
    dim = 48
    a = sincos_3d(torch.tensor([[1, 2, 3]]), dim)
    b = sincos_3d(torch.tensor([[7, 2, 3]]), dim)
    changed = (a != b)[0].nonzero().flatten()
    assert changed.min() >= 0 and changed.max() < dim // 3
    # value check against the formula for axis x, first frequency (1.0)
    c = sincos_3d(torch.tensor([[0, 0, 3]]), dim)
    per_axis = 2 * (dim // 6)
    assert torch.isclose(c[0, 2 * per_axis], torch.sin(torch.tensor(3.0)))


def test_concatenated_position_code_sits_beside_the_content():
    """pos_embed="concat" (the authors' layout): the last pos_dim channels of the embedding are exactly the
    sine-cosine code of the coordinates, the first width - pos_dim are the patch projection alone."""
    from neurovfm.models.vit import build_encoder

    enc = build_encoder("tiny", patch_size=(4, 16, 16), pos_embed="concat", pos_dim=30)
    assert enc.patch_embed.proj.out_features == 128 - 30
    patches = torch.randn(7, 1024)
    coords = torch.randint(0, 20, (7, 3))
    x = enc.embed(patches, coords)
    assert x.shape == (7, 128)
    torch.testing.assert_close(x[:, 98:], sincos_3d(coords, 30))
    torch.testing.assert_close(x[:, :98], enc.patch_embed(patches))
    # the added layout puts content and code in the same channels
    added = build_encoder("tiny", patch_size=(4, 16, 16))
    torch.testing.assert_close(added.embed(patches, coords), added.patch_embed(patches) + sincos_3d(coords, 128))
    cu = torch.tensor([0, 3, 7], dtype=torch.int32)
    assert enc(patches, coords, cu, 4).shape == (7, 128)
    with pytest.raises(ValueError, match="pos_dim"):
        build_encoder("tiny", pos_embed="concat", pos_dim=128)
    with pytest.raises(ValueError, match="position mode"):
        build_encoder("tiny", pos_embed="rotary")


def test_concat_predictor_mask_tokens_differ_only_by_position():
    from neurovfm.models.predictor import Predictor

    pred = Predictor(128, 96, depth=1, num_heads=4, pos_embed="concat", pos_dim=30)
    assert pred.mask_token.shape == (1, 66)
    ctx = torch.randn(5, 128)
    out = pred(
        ctx,
        torch.randint(0, 9, (5, 3)),
        torch.tensor([0, 5], dtype=torch.int32),
        torch.tensor([[1, 2, 3], [4, 5, 6]]),
        torch.tensor([0, 2], dtype=torch.int32),
    )
    assert out.shape == (2, 128) and not torch.allclose(out[0], out[1])
