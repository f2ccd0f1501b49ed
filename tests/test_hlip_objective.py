"""The HLIP objective without a text model: the per-modality CLIP loss against a per-pair reference, a CT pair
never a negative of an MRI pair, the balanced and resumable study stream, and the study attention pool."""

import math

import pytest
import torch
from torch.nn import functional as F

from neurovfm.hlip.loss import per_modality_clip, symmetric_infonce
from neurovfm.hlip.model import LogitScale, StudyAttentionPool
from neurovfm.hlip.stream import BalancedStudyStream
from neurovfm.models.packing import cu_seqlens_from_lengths

CT, MR = 0, 1


def embeddings(n, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, dim, generator=g), dim=-1), F.normalize(torch.randn(n, dim, generator=g), dim=-1)


def naive_loss(image, text, scale, modality):
    """Per pair: -log of its similarity's softmax over the texts (then the images) of the same modality."""
    per_modality = []
    for m in sorted(set(modality.tolist())):
        rows = [i for i in range(len(modality)) if modality[i] == m]
        i2t, t2i = [], []
        for i in rows:
            sim_i = [math.exp(scale * float(image[i] @ text[j])) for j in rows]
            sim_t = [math.exp(scale * float(image[j] @ text[i])) for j in rows]
            own = math.exp(scale * float(image[i] @ text[i]))
            i2t.append(-math.log(own / sum(sim_i)))
            t2i.append(-math.log(own / sum(sim_t)))
        per_modality.append(0.5 * (sum(i2t) / len(rows) + sum(t2i) / len(rows)))
    return sum(per_modality) / len(per_modality)


def test_loss_equals_the_per_pair_reference():
    image, text = embeddings(10)
    modality = torch.tensor([CT, MR, MR, CT, CT, MR, CT, MR, MR, CT])
    for scale in (1.0, 14.3):
        loss, parts = per_modality_clip(image, text, torch.tensor(scale), modality)
        assert float(loss) == pytest.approx(naive_loss(image, text, scale, modality), rel=1e-5)
        assert set(parts) == {CT, MR}
    # one modality alone is CLIP's loss
    only_ct = modality == CT
    alone = symmetric_infonce(image[only_ct], text[only_ct], torch.tensor(3.0))
    assert float(alone) == pytest.approx(naive_loss(image[only_ct], text[only_ct], 3.0, modality[only_ct]), rel=1e-5)


def test_a_ct_pair_is_never_a_negative_of_an_mri_pair():
    image, text = embeddings(8, seed=1)
    modality = torch.tensor([CT, CT, CT, CT, MR, MR, MR, MR])
    scale = torch.tensor(10.0)

    def ct_image_grad(text):
        img = image.clone().requires_grad_(True)
        loss, parts = per_modality_clip(img, text, scale, modality)
        loss.backward()
        return img.grad[modality == CT], parts[CT][0]

    grad, ct_loss = ct_image_grad(text)
    confusing = text.clone()
    confusing[modality == MR] = image[modality == CT]  # MRI reports that match the CT images perfectly
    grad2, ct_loss2 = ct_image_grad(confusing)
    assert torch.allclose(grad, grad2) and float(ct_loss) == pytest.approx(float(ct_loss2))
    # a CLIP loss over the whole batch would have seen them
    whole = symmetric_infonce(image, confusing, scale)
    assert float(whole) > float(symmetric_infonce(image, text, scale)) + 0.5


def test_learnable_temperature_starts_at_its_setting_and_is_capped():
    scale = LogitScale(0.07)
    assert float(scale().detach()) == pytest.approx(1 / 0.07)
    with torch.no_grad():
        scale.log_scale.fill_(10.0)
    assert float(scale().detach()) == pytest.approx(100.0)


def volumes():
    """9 CT studies of 1-3 volumes and 12 MRI studies of 2; one volume with too little foreground."""
    out = []
    for s in range(21):
        modality = "CT" if s < 9 else "MR"
        for v in range(1 + s % 3 if modality == "CT" else 2):
            out.append({"study_id": f"s{s:02d}", "modality": modality, "mask": {"n_foreground": 50}})
    out[0]["mask"]["n_foreground"] = 1
    return out


def test_batches_are_balanced_whole_studies_once_each():
    vols = volumes()
    with_text = {f"s{s:02d}" for s in range(21)} - {"s03", "s15"}
    stream = BalancedStudyStream(vols, with_text, batch_studies=6, seed=0, max_volumes=2)
    usable = range(1, len(vols))  # volume 0 has too little foreground
    seen = set()
    for b, keys in zip(range(12), stream):
        assert [k[:2] for k in keys] == [(b, j) for j in range(len(keys))]
        studies = [vols[i]["study_id"] for *_, i in keys]
        order = list(dict.fromkeys(studies))  # studies in batch order
        assert studies == sorted(studies, key=order.index), "a study's volumes are adjacent"
        modality = {vols[i]["study_id"]: vols[i]["modality"] for *_, i in keys}
        assert [modality[s] for s in order] == ["CT"] * 3 + ["MR"] * 3
        for s in order:  # every usable volume of the study, at most max_volumes
            assert studies.count(s) == min(2, sum(vols[i]["study_id"] == s for i in usable))
        assert not set(order) & {"s03", "s15"} and 0 not in [k[2] for k in keys]
        seen |= set(order)
    # every study with a text and a usable volume comes round (s00's only volume is too small)
    assert seen == with_text - {"s00"}


def test_stream_resumes_and_splits_between_processes():
    vols, texts = volumes(), {v["study_id"] for v in volumes()}
    straight = [keys for _, keys in zip(range(6), BalancedStudyStream(vols, texts, 4, seed=3))]
    resumed = next(iter(BalancedStudyStream(vols, texts, 4, seed=3, start=(4, 0))))
    assert resumed == straight[4]
    ranks = [
        [keys for _, keys in zip(range(6), BalancedStudyStream(vols, texts, 4, seed=3, rank=r, world_size=2))]
        for r in (0, 1)
    ]
    for b in range(6):
        whole = {vols[i]["study_id"] for *_, i in straight[b]}
        shares = [{vols[i]["study_id"] for *_, i in ranks[r][b]} for r in (0, 1)]
        assert shares[0] | shares[1] == whole and not shares[0] & shares[1]
        assert all(sorted(vols[i]["modality"] for *_, i in ranks[r][b])[0] == "CT" for r in (0, 1))
    with pytest.raises(ValueError, match="equal CT and MRI halves"):
        BalancedStudyStream(vols, texts, 6, seed=0, world_size=2)
    with pytest.raises(ValueError, match="fewer than"):
        BalancedStudyStream(vols, texts, 20, seed=0)


def test_attention_pool_weighs_each_studys_tokens_alone():
    torch.manual_seed(0)
    pool = StudyAttentionPool(16, num_heads=4)
    tokens = torch.randn(12, 16)
    cu, _ = cu_seqlens_from_lengths([3, 5, 4])
    alpha = pool.attention(tokens, cu)
    assert alpha.shape == (12, 4)
    for a, b in ((0, 3), (3, 8), (8, 12)):
        assert torch.allclose(alpha[a:b].sum(0), torch.ones(4))
    out = pool(tokens, cu)
    other = tokens.clone()
    other[3:] = torch.randn(9, 16)  # the other studies change
    out2 = pool(other, cu)
    assert out.shape == (3, 16) and torch.allclose(out[0], out2[0]) and not torch.allclose(out[1], out2[1])
    alone = pool(tokens[:3], cu_seqlens_from_lengths([3])[0])
    assert torch.allclose(out[0], alone[0], atol=1e-6)
