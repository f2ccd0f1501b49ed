"""Toy shard splits for tests: volumes given as (metadata, planes, token mask), written with the store's own writer
and index functions, so a test describes only what its volumes are."""

from pathlib import Path

import numpy as np

from neurovfm.store.index import aligned, mask_offset, record_nbytes, shard_file, token_shape, write_index
from neurovfm.store.writer import allocate, commit, temp_path, write_record

# the store's CT layout (brain 8 bits; blood and bone 4 bits sharing a plane) and the single MRI plane
TOY_LAYOUTS = {
    "CT": {
        "planes": 2,
        "channels": [
            {"name": "brain", "bits": 8, "plane": 0, "nibble": None, "window": {"width": 80.0, "level": 40.0}},
            {"name": "blood", "bits": 4, "plane": 1, "nibble": "high", "window": {"width": 200.0, "level": 80.0}},
            {"name": "bone", "bits": 4, "plane": 1, "nibble": "low", "window": {"width": 2800.0, "level": 600.0}},
        ],
    },
    "MR": {"planes": 1, "channels": [{"name": "mri", "bits": 8, "plane": 0, "nibble": None}]},
}


def write_toy_split(out: Path, split: str, volumes, patch, layouts) -> Path:
    """``volumes``: (meta, planes [list of uint8 arrays of one shape], token mask) per volume; ``meta`` holds the
    index fields a test cares about (series_id, study_id, modality, ...). Writes one shard and ``index.json``
    into ``out`` (created) and returns the index path."""
    out.mkdir(parents=True, exist_ok=True)
    entries, off = [], 0
    for meta, data, mask in volumes:
        shape = tuple(data[0].shape)
        planes = len(data)
        entry = {
            **meta,
            "split": split,
            "shard": 0,
            "offset": off,
            "nbytes": record_nbytes(shape, patch, planes),
            "shape": list(shape),
            "mask": {
                "offset": mask_offset(shape, planes),
                "shape": list(token_shape(shape, patch)),
                "n_foreground": int(np.asarray(mask).sum()),
            },
        }
        entries.append((entry, data, mask))
        off = aligned(off + record_nbytes(shape, patch, planes))
    final = out / shard_file(0)
    allocate(temp_path(final), off)
    for e, data, mask in entries:
        write_record(temp_path(final), e["offset"], data, mask)
    commit(temp_path(final), final)
    write_index(
        out / "index.json",
        {
            "format": "neurovfm-shards",
            "version": 1,
            "split": split,
            "axis_order": ["slice", "row", "col"],
            "spacing_mm": [4.0, 1.0, 1.0],
            "patch": list(patch),
            "align": 4096,
            "layouts": layouts,
            "shards": [{"file": shard_file(0), "nbytes": off, "n_volumes": len(entries), "fingerprint": split}],
            "volumes": [e for e, _, _ in entries],
        },
    )
    return out / "index.json"


def toy_model_config(patch) -> dict:
    """The smallest encoder configuration the diagnostics' positive controls train in tests."""
    return {
        "name": "t",
        "encoder": "tiny",
        "patch_size": list(patch),
        "in_chans": 1,
        "predictor_dim": 48,
        "predictor_depth": 1,
        "predictor_heads": 4,
    }
