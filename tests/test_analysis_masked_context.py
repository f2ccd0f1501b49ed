"""Masked-context diagnostics: holes and shells against a naive loop, the hidden token never reaches the encoder,
a halo around a lesion is visible from the shell while a lesion without one is not (the diagnostic's own positive
and negative control), and the supervised positive control learns."""

import numpy as np
import torch

from neurovfm.analysis import masked_context as mc
from neurovfm.analysis.lesion_tokens import grouped_oof_scores
from sklearn.metrics import roc_auc_score

from shard_factory import toy_model_config

PATCH = (4, 16, 16)


def test_hole_groups_keep_holes_out_of_other_shells():
    rng = np.random.default_rng(0)
    centres = rng.integers(0, 12, (40, 3))
    groups = mc.hole_groups(centres, inner=1, outer=2, max_group=5)
    assert sorted(sum(groups, [])) == list(range(40)) and max(len(g) for g in groups) <= 5
    for g in groups:
        for a in g:
            for b in g:
                if a != b:
                    assert np.abs(centres[a] - centres[b]).max() > 3


def test_group_inputs_against_a_naive_loop():
    grid = np.stack(np.meshgrid(*[np.arange(7)] * 3, indexing="ij"), -1).reshape(-1, 3)
    centres = np.array([[1, 1, 1], [5, 5, 5]])
    kept, shells = mc.group_inputs(grid, centres, [0, 1], inner=1, outer=2)
    for k, c in enumerate(grid):
        d = [np.abs(c - x).max() for x in centres]
        assert (k in kept) == (min(d) > 1)
    for j, sh in enumerate(shells):
        naive = [k for k in kept if 1 < np.abs(grid[k] - centres[j]).max() <= 2]
        assert sorted(kept[sh].tolist()) == naive


class _MeanEncoder(torch.nn.Module):
    """Each token's output is the mean of all input tokens' voxels plus its own mean: it mixes context."""

    embed_dim = 2

    def forward(self, patches, coords, cu, max_len):
        out = []
        for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):
            p = patches[a:b]
            out.append(torch.stack([p.mean(1), p.mean().expand(b - a)], 1))
        return torch.cat(out)


class _Data:
    """12 x 4 x 4 token volumes; one bright lesion token per volume at a random place (seeded), with or without a
    halo reaching two tokens out; controls: tokens elsewhere of the same brightness (a bright spot without halo)."""

    ct_channels = ["brain"]

    def __init__(self, halo: bool, n: int = 30):
        self.halo = halo
        self.volumes = [{"series_id": f"v{k}", "modality": "MR", "study_id": f"s{k}"} for k in range(n)]
        rng = np.random.default_rng(1)
        self.lesion = {k: (int(rng.integers(1, 3)), 1, int(rng.integers(1, 3))) for k in range(n)}
        self.control = {k: (int(rng.integers(8, 10)), 2, 2) for k in range(n)}

    def __len__(self):
        return len(self.volumes)

    def __getitem__(self, i):
        rng = np.random.default_rng(100 + i)
        img = rng.normal(0.0, 0.2, (48, 64, 64)).astype(np.float32)

        def fill(c, value, radius=0):
            z, y, x = c
            sl = [
                slice(max(0, 4 * (z - radius)), 4 * (z + radius + 1)),
                slice(max(0, 16 * (y - radius)), 16 * (y + radius + 1)),
                slice(max(0, 16 * (x - radius)), 16 * (x + radius + 1)),
            ]
            img[tuple(sl)] += value

        if self.halo:
            fill(self.lesion[i], 0.6, radius=2)  # reaches the shell (the hole is radius 1)
        fill(self.lesion[i], 2.0 - (0.6 if self.halo else 0.0))
        fill(self.control[i], 2.0)
        return {"image": torch.from_numpy(img[None]), "token_mask": torch.ones(12, 4, 4, dtype=torch.bool)}


def _centres(data):
    return {
        (v["series_id"], "mri"): (np.array([data.lesion[k], data.control[k]]), np.array([1, 0], np.int8), f"p{k}")
        for k, v in enumerate(data.volumes)
    }


def test_hidden_token_never_reaches_the_encoder_and_a_halo_is_seen_from_the_shell():
    results = {}
    for halo in (True, False):
        data = _Data(halo)
        c, skipped = mc.collect({"train": data}, _centres(data), {"mean": _MeanEncoder()}, PATCH, seed=0)
        assert not skipped and len(c.label) == 2 * len(data)
        y, g = c.label, c.group
        results[halo] = {k: roc_auc_score(y, grouped_oof_scores(x, y, g, seed=0)) for k, x in c.features.items()}
    # with a halo the shell tells lesion from control; without one it cannot (the lesion token itself is hidden)
    assert results[True]["shell_intensity"] > 0.9 and results[True]["mean"] > 0.9
    assert results[False]["shell_intensity"] < 0.75 and results[False]["mean"] < 0.75
    # the hidden content: make each lesion token much brighter; its shell features do not move, its target does
    data = _Data(False, n=6)
    base = mc.collect({"train": data}, _centres(data), {"mean": _MeanEncoder()}, PATCH, seed=0)[0]
    again = mc.collect({"train": _Brighter(False, n=6)}, _centres(data), {"mean": _MeanEncoder()}, PATCH, seed=0)[0]
    # column 1 is the mean over every input token: it would move if the hidden token were in the input
    assert np.allclose(again.features["mean"], base.features["mean"], atol=1e-5)
    assert np.allclose(again.features["shell_intensity"], base.features["shell_intensity"])
    lesion = base.label == 1
    assert np.all(again.content[lesion, 0] > base.content[lesion, 0] + 40)  # the target does see it
    assert np.allclose(again.content[~lesion], base.content[~lesion])


class _Brighter(_Data):
    def __getitem__(self, i):
        item = super().__getitem__(i)
        z, y, x = self.lesion[i]
        item["image"][0, 4 * z : 4 * z + 4, 16 * y : 16 * y + 16, 16 * x : 16 * x + 16] += 50.0
        return item


def test_context_positive_control_learns():
    torch.set_num_threads(1)
    data = _Data(True, n=8)
    mcfg = toy_model_config(PATCH)
    enc, losses = mc.train_context_encoder(
        mcfg, data, _centres(data), "brain", steps=80, batch_size=4, lr=2e-3, weight_decay=0.0, seed=0
    )
    assert np.mean(losses[-10:]) < 0.75 * np.mean(losses[:10])
    assert not enc.training
