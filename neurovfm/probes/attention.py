"""Per-class, per-volume attention maps of a trained probe (the grounding behind Fig. 3d).

For one study the probe's attention over its packed bag is split back into the bag's entries (volume x CT window),
each with its token coordinates, so a map can be painted onto the preprocessed volume. The classify-then-aggregate
head has one attention column per class; the gated-attention head a single column shared by all classes.
Maps are stored as ``attention.npz``: per entry ``{study}/{series}/{window}/attention`` (float16 [n_tokens, K or 1])
and ``.../coords`` (int16 [n_tokens, 3]), plus ``index`` (JSON: entries with study_id, series_id, window, grid).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from neurovfm.utils.atomic import atomic_path

from .bags import BagSet


@torch.no_grad()
def study_attention(model: nn.Module, bags: BagSet, i: int) -> list[dict]:
    """Attention of study ``i`` split into its entries: dicts of the entry metadata plus ``attention`` and
    ``coords``. Each attention column sums to 1 over the whole study (all entries together)."""
    model.eval()
    tokens, cu = bags.pack([i])
    dev = next(model.parameters()).device
    _, alpha = model(tokens.to(dev), cu.to(dev))
    alpha = alpha.float().cpu().numpy()
    out, start = [], 0
    for e, meta in zip(bags.entries[i], bags.entry_meta(i)):
        n = meta["n_tokens"]
        out.append(
            {
                "study_id": meta["study_id"],
                "series_id": meta["series_id"],
                "window": meta["window"],
                "grid": meta["grid"],
                "attention": alpha[start : start + n],
                "coords": np.asarray(bags.reader.coords(e)),
            }
        )
        start += n
    return out


def write_attention(path: str | Path, model: nn.Module, bags: BagSet, indices) -> int:
    """Write the maps of the studies ``indices`` of ``bags`` to one ``.npz`` file; returns the entry count."""
    arrays, index = {}, []
    for i in indices:
        for ent in study_attention(model, bags, int(i)):
            key = f"{ent['study_id']}/{ent['series_id']}/{ent['window']}"
            arrays[f"{key}/attention"] = ent["attention"].astype(np.float16)
            arrays[f"{key}/coords"] = ent["coords"].astype(np.int16)
            index.append({k: ent[k] for k in ("study_id", "series_id", "window", "grid")})
    arrays["index"] = np.array(json.dumps({"class_names": bags.class_names, "entries": index}))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return len(index)


def read_attention(path: str | Path) -> tuple[dict, dict]:
    """(index dict, lazily loaded npz) of a file written by :func:`write_attention`."""
    data = np.load(path, allow_pickle=False)
    return json.loads(str(data["index"])), data
