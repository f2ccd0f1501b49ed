"""The DINOv2 objective on slices: multi-crop shapes and crops of foreground slices, the DINO loss, Sinkhorn-Knopp
and centred teacher targets, KoLeo against naive references, iBOT masking ratios and a loss that only reaches the
masked patches, the EMA update, gradients that reach the student and not the teacher."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurovfm.dinov2.crops import CropSpec
from neurovfm.dinov2.data import DinoCollator, SliceItems
from neurovfm.dinov2.loss import Centering, dino_loss, ibot_loss, koleo, sinkhorn_knopp
from neurovfm.dinov2.masking import block_mask, ibot_masks
from neurovfm.dinov2.train import DinoModel, build_dino, dino_step
from neurovfm.jepa.build import model_config
from neurovfm.jepa.ema import ema_update
from neurovfm.jepa.train import param_groups, seed_everything
from neurovfm.store.dataset import VolumeDataset
from dinov2_fixtures import DINO, PATCH, config, write_train

FG_SLICES = set(range(4, 12))  # token slabs 1 and 2 of 4-slice slabs


@pytest.fixture(scope="module")
def batch_parts(tmp_path_factory):
    cfg = config()
    index = write_train(tmp_path_factory.mktemp("dino"))
    ds = VolumeDataset(index, None, ct_window_probs=cfg["pretrain"]["ct_window_probs"], seed=0)
    model = model_config(cfg["pretrain"], "d", cfg["preprocess"]["patch"])
    items = SliceItems(ds, seed=0, rank=0, ct_window_probs=cfg["pretrain"]["ct_window_probs"], slices_per_volume=2)
    collate = DinoCollator(CropSpec.from_model(model), DINO["ibot"], DINO["patch"], PATCH[1:], seed=0)
    raw = [items[(0, k, k)] for k in range(4)]
    return cfg, model, ds, raw, collate(raw)


def test_multi_crop_shapes_and_foreground_slices(batch_parts):
    cfg, _, ds, raw, batch = batch_parts
    b = 4 * 2  # volumes x slices per volume
    assert batch.global_crops.shape == (2 * b, 3, 32, 32) and batch.local_crops.shape == (2 * b, 3, 16, 16)
    assert batch.masks.shape == (2 * b, 16) and batch.masks.dtype == torch.bool
    assert len(batch.modality) == 2 * b and batch.n_images == b and batch.n_volumes == 4
    for it in raw:
        assert set(it["slice_index"].tolist()) <= FG_SLICES
        assert it["window"] == "mri" if it["modality"] == "MR" else it["window"] in ("brain", "blood", "bone")
        want = np.asarray(ds.reader.channel(it["index"], it["window"]))[it["slice_index"]]
        np.testing.assert_array_equal(it["slices"], want)  # the drawn slices of the drawn window, as stored
    for (_, slice_index, _), crops in zip(batch.slices, batch.boxes):
        assert slice_index in FG_SLICES
        assert len(crops["boxes"]) == 2 + DINO["n_local"] and crops["side"] == 48
        for (top, left, h, w), (r, c) in zip(crops["boxes"], crops["anchors"]):
            assert 16 <= r < 48  # a pixel of a foreground token (token rows 1 and 2)
            assert top <= r < top + h and left <= c < left + w and top + h <= 48 and left + w <= 48
    # crop-major: the first global crop of every image, then the second
    assert not torch.equal(batch.global_crops[:b], batch.global_crops[b:])


def test_background_slices_are_never_drawn(batch_parts):
    cfg, _, ds, _, _ = batch_parts
    items = SliceItems(ds, seed=1, rank=0, ct_window_probs=cfg["pretrain"]["ct_window_probs"], slices_per_volume=3)
    drawn = {int(s) for e in range(6) for k in range(len(ds)) for s in items[(e, k, k)]["slice_index"]}
    assert drawn <= FG_SLICES and len(drawn) >= 6


def test_dino_loss_against_a_naive_reference():
    g = torch.Generator().manual_seed(0)
    s = [torch.randn(5, 7, generator=g) for _ in range(3)]
    t = [F.softmax(torch.randn(5, 7, generator=g), -1) for _ in range(3)]
    pairs = [(s[0], t[1]), (s[1], t[0]), (s[2], t[0]), (s[2], t[1])]
    naive = 0.0
    for a, p in pairs:
        for i in range(5):
            z = [math.exp(a[i, k].item() / 0.1) for k in range(7)]
            naive -= sum(p[i, k].item() * math.log(z[k] / sum(z)) for k in range(7)) / 5
    assert dino_loss(pairs, 0.1).item() == pytest.approx(naive / len(pairs), rel=1e-5)


def test_sinkhorn_knopp_against_a_naive_reference():
    logits = torch.randn(12, 5, generator=torch.Generator().manual_seed(1))
    q = np.exp(logits.double().numpy() / 0.07).T  # [K, N]
    q /= q.sum()
    for _ in range(3):
        q /= q.sum(axis=1, keepdims=True) * 5
        q /= q.sum(axis=0, keepdims=True) * 12
    want = (q * 12).T
    got = sinkhorn_knopp(logits, 0.07, 3)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.sum(1).numpy(), 1.0, rtol=1e-5)
    balanced = sinkhorn_knopp(logits, 0.5, 50)  # iterated: every prototype the same mass over the batch
    np.testing.assert_allclose(balanced.sum(0).numpy(), 12 / 5, rtol=1e-3)
    assert balanced.sum(0).std() < 0.1 * F.softmax(logits / 0.5, -1).sum(0).std()


def test_centering_targets_and_update():
    c = Centering(4, momentum=0.9)
    c.center.copy_(torch.tensor([[0.5, -0.5, 0.0, 1.0]]))
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(2))
    want = F.softmax((logits - torch.tensor([[0.5, -0.5, 0.0, 1.0]])) / 0.04, -1)
    torch.testing.assert_close(c.targets(logits, 0.04), want)
    c.update(logits)
    torch.testing.assert_close(c.center, 0.9 * torch.tensor([[0.5, -0.5, 0.0, 1.0]]) + 0.1 * logits.mean(0, True))


def test_koleo_against_a_naive_reference():
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(3))
    u = [v / v.norm() for v in x]
    naive = -sum(math.log(min((u[i] - u[j]).norm().item() for j in range(6) if j != i) + 1e-8) for i in range(6)) / 6
    assert koleo(x).item() == pytest.approx(naive, rel=1e-4)
    spread = torch.eye(6)  # orthogonal unit vectors: every neighbour at sqrt(2)
    assert koleo(spread).item() == pytest.approx(-math.log(math.sqrt(2)), rel=1e-5)


def test_ibot_masking_ratios():
    rng = np.random.default_rng(0)
    for n in (10, 33, 64):
        m = block_mask(8, n, rng)
        assert m.sum() == n
    masks = ibot_masks(20, 8, 0.5, (0.1, 0.5), rng)
    counts = masks.sum(1)
    assert (counts > 0).sum() == 10 and (counts == 0).sum() == 10
    ratios = np.sort(counts[counts > 0]) / 64
    assert ratios.min() >= 0.1 - 1 / 128 and ratios.max() <= 0.5 + 1 / 128
    bins = np.linspace(0.1, 0.5, 11)  # one image per bin: the ratios are spread over the range
    assert all(bins[i] - 1 / 128 <= ratios[i] <= bins[i + 1] + 1 / 128 for i in range(10))


def test_ibot_loss_reaches_only_the_masked_patches(batch_parts):
    _, model, _, _, batch = batch_parts
    seed_everything(0)
    student, _, _ = build_dino(model)
    feats = student.backbone.forward_features(batch.global_crops, batch.masks)
    patches = feats["patches"]
    patches.retain_grad()
    masks = batch.masks
    logits = student.head(patches[masks])
    targets = F.softmax(torch.randn(logits.shape, generator=torch.Generator().manual_seed(4)), -1)
    loss = ibot_loss(logits, targets, masks, 0.1)
    # naive: per image the mean over its masked patches, then the mean over all images
    per_image = []
    for i in range(masks.shape[0]):
        start = int(masks[:i].sum())  # rows of image i's masked patches in logits / targets
        ce = [-(targets[start + k] * F.log_softmax(logits[start + k] / 0.1, -1)).sum() for k in range(masks[i].sum())]
        per_image.append(torch.stack(ce).mean() if ce else torch.zeros(()))
    assert loss.item() == pytest.approx(torch.stack(per_image).mean().item(), rel=1e-5)
    loss.backward()
    grad = patches.grad.abs().sum(-1)
    assert (grad[~masks] == 0).all() and (grad[masks] > 0).all()
    assert student.backbone.mask_token.grad.abs().sum() > 0  # the student saw mask tokens


def test_ema_update_of_backbone_and_head(batch_parts):
    _, model, _, _, _ = batch_parts
    seed_everything(0)
    student, teacher, _ = build_dino(model)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    before = copy.deepcopy(teacher.state_dict())
    ema_update(teacher, student, 0.9)
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, 0.9 * before[k] + 0.1 * student.state_dict()[k])
    assert isinstance(teacher, DinoModel) and "head.last_layer.weight" in before


@pytest.mark.parametrize("centering", ["sinkhorn_knopp", "centering"])
def test_gradients_reach_the_student_not_the_teacher(batch_parts, centering):
    cfg, model, _, _, batch = batch_parts
    model = {**model, "dino": {**model["dino"], "centering": centering}}
    seed_everything(0)
    student, teacher, targets = build_dino(model)
    opt = torch.optim.AdamW(param_groups(student), lr=1e-3)
    out = dino_step(student, teacher, targets, batch, model["dino"], 0.04, opt, 1.0, None, freeze_last_layer=True)
    assert math.isfinite(out["loss"].item()) and out["ibot"] > 0 and out["dino_local"] > 0
    grads = {n: p.grad for n, p in student.named_parameters()}
    assert grads["head.last_layer.weight"] is None  # prototypes frozen at the start
    assert all(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n != "head.last_layer.weight")
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    if centering == "centering":
        assert targets.cls.center.abs().sum() > 0 and targets.patch.center.abs().sum() > 0
    opt.zero_grad()
    out = dino_step(student, teacher, targets, batch, model["dino"], 0.04, opt, 1.0, None, freeze_last_layer=False)
    assert student.head.last_layer.weight.grad.abs().sum() > 0
