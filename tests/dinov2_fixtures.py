"""Toy train shards and the tiny DINOv2 settings the DINOv2 tests share."""

import copy
from pathlib import Path

import numpy as np

from neurovfm.config import default_config
from neurovfm.store.index import token_shape
from shard_factory import TOY_LAYOUTS, write_toy_split

PATCH = (4, 16, 16)
DINO = {
    "patch": 8,
    "image_size": 32,
    "local_size": 16,
    "n_local": 2,
    "global_scale": [0.32, 1.0],
    "local_scale": [0.05, 0.32],
    "flip_p": 0.5,
    "jitter": {"p": 0.8, "brightness": 0.4, "contrast": 0.4},
    "mean": [0.2, 0.2, 0.2],
    "std": [0.3, 0.3, 0.3],
    "slices_per_volume": 2,
    "head": {"prototypes": 64, "hidden": 32, "bottleneck": 16, "layers": 3},
    "student_temp": 0.1,
    "teacher_temp": {"start": 0.04, "end": 0.07, "warmup_fraction": 0.3},
    "centering": "sinkhorn_knopp",
    "sinkhorn_iterations": 3,
    "center_momentum": 0.9,
    "ibot": {"weight": 1.0, "mask_probability": 0.5, "mask_ratio": [0.1, 0.5]},
    "koleo_weight": 0.1,
    "dino_weight": 1.0,
    "freeze_last_layer_steps": 1,
}
SLICES = {"slice_stride": 1, "max_slices": 3, "foreground_only": True, "batch_size": 4}
TINY_DINOV2 = {"objective": "dinov2", "encoder": "tiny", "dino": DINO, "slices": SLICES}


def model(**dino) -> dict:
    m = copy.deepcopy(TINY_DINOV2)
    m["dino"].update(dino)
    return m


def config(steps=4, dino=None, **pretrain) -> dict:
    return default_config(
        pretrain={
            "models": {"d": model(**(dino or {}))},
            "train": ["d"],
            "steps": steps,
            "batch_size": 4,
            "checkpoint_every": 2,
            "progress_every_s": 1000,
            **pretrain,
        },
        features={"chunk_tokens": 20, "progress_every_s": 0.0},
    )


def toy_volumes(n=8, seed=0):
    """Volumes [16, 48, 48] (token grid 4 x 3 x 3): slices of token slabs 1 and 2 hold a bright disc whose radius and
    brightness vary between volumes; their foreground is the token rows 1 and 2 (pixel rows 16-47); slabs 0 and 3
    are background. CT and MRI alternate."""
    rng = np.random.default_rng(seed)
    out = []
    yy, xx = np.mgrid[:48, :48]
    for k in range(n):
        modality = "CT" if k % 2 else "MR"
        shape = (16, 48, 48)
        mask = np.zeros(token_shape(shape, PATCH), dtype=bool)
        mask[1:3, 1:] = True
        cy, cx, r = rng.uniform(18, 30), rng.uniform(18, 30), rng.uniform(8, 16)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.float32)
        vol = np.zeros(shape, dtype=np.float32)
        vol[4:12] = disc * rng.uniform(100, 250) + rng.normal(0, 5, size=(8, 48, 48))
        data = np.clip(vol, 0, 255).astype(np.uint8)
        planes = [data] * TOY_LAYOUTS[modality]["planes"]
        meta = {"series_id": f"s{k}", "study_id": f"st{k // 2}", "patient_id": f"p{k // 2}", "modality": modality}
        out.append((meta, planes, mask))
    return out


def write_train(root: Path, n=8, seed=0) -> Path:
    return write_toy_split(Path(root) / "train", "train", toy_volumes(n, seed), PATCH, TOY_LAYOUTS)
