"""The lesion check's positive control: labels keyed by series and grid position, whole-volume samples that keep
every labelled token under the token cap, and an encoder that learns to tell planted lesion tokens apart."""

import numpy as np
import torch

from neurovfm.analysis.lesion_supervised import labels_by_series, train_lesion_encoder, volume_sample

from shard_factory import toy_model_config

PATCH = (4, 16, 16)


class _Data:
    """Volumes of 4 x 4 x 4 tokens; in each, two tokens carry a faint texture (the lesion) and two others the same
    mean brightness without it (matched controls)."""

    def __init__(self, n=6):
        self.volumes = [{"series_id": f"v{k}", "modality": "MR", "study_id": f"s{k}"} for k in range(n)]
        self.lesion = {k: [(k % 4, 1, 2), ((k + 1) % 4, 3, 0)] for k in range(n)}
        self.control = {k: [((k + 2) % 4, 0, 1), ((k + 3) % 4, 2, 3)] for k in range(n)}

    def __len__(self):
        return len(self.volumes)

    def __getitem__(self, i):
        rng = np.random.default_rng(i)
        image = rng.normal(0.0, 0.1, (16, 64, 64)).astype(np.float32)
        stripes = np.tile(np.r_[np.ones(2), -np.ones(2)], 4).astype(np.float32)  # zero-mean texture
        for z, y, x in self.lesion[i]:
            image[4 * z : 4 * z + 4, 16 * y : 16 * y + 16, 16 * x : 16 * x + 16] += 0.8 * stripes[None, None, :]
        return {"image": torch.from_numpy(image[None]), "token_mask": torch.ones(4, 4, 4, dtype=torch.bool)}


def _tokens(data):
    rows = [(k, c, 1) for k in range(len(data)) for c in data.lesion[k]]
    rows += [(k, c, 0) for k in range(len(data)) for c in data.control[k]]
    return {
        "series": np.array([f"v{k}" for k, _, _ in rows], object),
        "window": np.full(len(rows), "mri", object),
        "coords": np.array([c for _, c, _ in rows]),
        "label": np.array([lab for _, _, lab in rows], np.int8),
    }


def test_labels_by_series_and_volume_sample_keep_labelled_tokens():
    data = _Data()
    labels = labels_by_series(_tokens(data))
    assert set(labels) == {(f"v{k}", "mri") for k in range(6)}
    assert labels[("v0", "mri")][(0, 1, 2)] == 1 and labels[("v0", "mri")][(2, 0, 1)] == 0
    patches, coords, pos, y = volume_sample(data, 0, labels[("v0", "mri")], PATCH, 10, np.random.default_rng(0))
    assert len(patches) == len(coords) == 10 and len(pos) == 4  # 4 labelled + 6 of the 60 others
    got = {tuple(coords[p].tolist()): int(v) for p, v in zip(pos, y)}
    assert got == labels[("v0", "mri")]
    keep = np.array([True] * 6 + [False] * 6 + [True] * 6 + [False] * 6)
    assert set(labels_by_series(_tokens(data), keep)) == {(f"v{k}", "mri") for k in range(3)}


def test_supervised_control_learns_the_lesion_texture():
    torch.set_num_threads(1)
    data = _Data()
    mcfg = toy_model_config(PATCH)
    enc, losses = train_lesion_encoder(
        mcfg, data, labels_by_series(_tokens(data)), "brain", steps=40, batch_size=2, lr=2e-3, weight_decay=0.0, seed=0
    )
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert not enc.training
