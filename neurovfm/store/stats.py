"""Train-split intensity statistics per modality and channel: mean and standard deviation of
``voxel / 255`` over foreground voxels (the voxel masks of preprocessing), from the exact integer
moments every index entry carries (count, sum of levels, sum of squared levels, levels on the 8-bit
scale), so the numbers do not depend on processing order."""

from __future__ import annotations

import json
import math
from pathlib import Path

from neurovfm.store.index import dumps
from neurovfm.utils.atomic import write_text


def compute_stats(volumes: list[dict], split: str = "train") -> dict:
    acc: dict[str, dict[str, list[int]]] = {}
    for v in volumes:
        for name, (n, s1, s2) in v["moments"].items():
            tot = acc.setdefault(v["modality"], {}).setdefault(name, [0, 0, 0])
            tot[0] += n
            tot[1] += s1
            tot[2] += s2
    out = {}
    for modality, chans in sorted(acc.items()):
        out[modality] = {}
        for name, (n, s1, s2) in chans.items():
            if n == 0:
                continue
            mean = s1 / (255.0 * n)
            var = max(s2 / (255.0**2 * n) - mean * mean, 0.0)
            out[modality][name] = {"mean": mean, "std": math.sqrt(var), "n_voxels": n}
    return {"scale": "voxel / 255", "region": "foreground voxels", "split": split, "stats": out}


def write_stats(path: str | Path, stats: dict) -> None:
    write_text(path, dumps(stats))


def load_stats(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())["stats"]
