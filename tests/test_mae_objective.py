"""The VideoMAE objective: per-patch normalised targets that are never back-propagated, gradients that reach
the encoder and the decoder, a reconstruction loss that falls on a tiny synthetic batch, decoder shapes."""

import math

import numpy as np
import torch

from neurovfm.config import default_config
from neurovfm.jepa.build import model_config
from neurovfm.jepa.toy import ToyVolumes
from neurovfm.jepa.train import param_groups, seed_everything
from neurovfm.mae.loss import patch_targets, reconstruction_loss
from neurovfm.mae.masking import MaeMaskSpec
from neurovfm.mae.model import build_mae
from neurovfm.mae.train import MaskCollator, mae_step
from mae_fixtures import TINY_MAE

SMALL = TINY_MAE


def setup(seed=0, n=4):
    cfg = default_config(pretrain={"models": {"m": SMALL}, "train": ["m"]})
    model = model_config(cfg["pretrain"], "m", cfg["preprocess"]["patch"])
    seed_everything(seed)
    mae = build_mae(model)
    data = ToyVolumes(n=n, grid=(4, 6, 6), seed=seed)
    collate = MaskCollator(cfg["pretrain"], cfg["preprocess"]["patch"], seed=seed, spec=MaeMaskSpec(0.85, "tube"))
    batch = collate([{**data[i], "epoch": 0, "offset": i} for i in range(n)])
    return cfg, model, mae, batch


def test_targets_are_normalised_per_patch_and_detached():
    x = (torch.randn(5, 1024) * torch.arange(1, 6)[:, None] + 7.0).requires_grad_(True)
    t = patch_targets(x, in_chans=1, norm_pix=True)
    assert not t.requires_grad
    assert torch.allclose(t.mean(1), torch.zeros(5), atol=1e-5)
    assert torch.allclose(t.std(1, unbiased=True), torch.ones(5), atol=1e-4)
    two = patch_targets(torch.cat([x, 3 * x], 1), in_chans=2)  # per channel: both halves standardised alike
    assert torch.allclose(two[:, :1024], two[:, 1024:], atol=1e-4)
    assert torch.equal(patch_targets(x, norm_pix=False), x.detach())
    flat = patch_targets(torch.full((2, 1024), 3.0))  # a constant patch: zeros, not NaN
    assert torch.equal(flat, torch.zeros_like(flat))


def test_decoder_reconstructs_every_masked_token():
    _, model, mae, batch = setup()
    pred = mae(batch.patches, batch.coords, batch.ctx_idx, batch.cu_ctx, batch.max_ctx, batch.tgt_idx, batch.cu_tgt)
    assert pred.shape == (batch.tgt_idx.numel(), math.prod(model["patch_size"]))


def test_gradients_reach_encoder_and_decoder_but_not_the_targets():
    _, _, mae, batch = setup()
    patches = batch.patches.clone().requires_grad_(True)
    pred = mae(patches, batch.coords, batch.ctx_idx, batch.cu_ctx, batch.max_ctx, batch.tgt_idx, batch.cu_tgt)
    loss = reconstruction_loss(pred, patch_targets(patches[batch.tgt_idx]))
    loss.backward()
    for name, p in mae.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    for part in (mae.encoder, mae.decoder):
        assert sum(float(p.grad.abs().sum()) for p in part.parameters()) > 0
    assert float(mae.encoder.patch_embed.proj.weight.grad.abs().sum()) > 0
    # masked tokens enter the loss only as targets: no gradient flows to them; visible tokens feed the encoder
    assert torch.count_nonzero(patches.grad[batch.tgt_idx]) == 0
    assert torch.count_nonzero(patches.grad[batch.ctx_idx]) > 0


def test_loss_falls_on_a_tiny_batch_within_a_few_dozen_steps():
    """Normalised targets of the toy heads' flat interior are mostly noise (a floor near 1), so the normalised
    loss falls less than the raw one; both fall steadily."""
    for norm_pix, factor in ((True, 0.9), (False, 0.6)):
        _, _, mae, batch = setup(seed=1)
        opt = torch.optim.AdamW(param_groups(mae), lr=3e-3, weight_decay=0.05)
        losses = []
        for _ in range(40):
            out = mae_step(mae, batch, opt, grad_clip=1.0, amp=None, norm_pix=norm_pix)
            opt.step()
            losses.append(float(out["loss"]))
        assert np.isfinite(losses).all()
        assert np.mean(losses[-5:]) < factor * np.mean(losses[:3]), (norm_pix, losses)
        assert np.mean(losses[20:25]) > np.mean(losses[-5:]), (norm_pix, losses)  # still falling
