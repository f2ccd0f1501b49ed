"""The package's MKL settings make CPU results independent of the thread count (checked in a fresh interpreter:
MKL reads its environment when torch loads it)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import hashlib, json, sys
import neurovfm  # noqa: F401  (its environment defaults apply before torch loads MKL)
import torch
from neurovfm.config import default_config
from neurovfm.features.encoders import random_encoder
from neurovfm.features.extract import encode_pack

enc, _ = random_encoder(default_config(), seed=3)
if sys.argv[1] == "perturbed":  # positive control: one weight moved by one unit in the last place
    w = enc.patch_embed.proj.weight
    w.data[0, 0] = torch.nextafter(w.data[0, 0], torch.tensor(1e9))
g = torch.Generator().manual_seed(0)
items = [
    {"patches": torch.randn(n, enc.patch_embed.proj.in_features, generator=g),
     "coords": torch.randint(0, 12, (n, 3), generator=g)}
    for n in (300, 517, 1200)
]
out = []
for threads in (1, 2):
    torch.set_num_threads(threads)
    feats = encode_pack(enc, items, torch.device("cpu"), "fp32")
    out.append(hashlib.sha256(b"".join(f.numpy().tobytes() for f in feats)).hexdigest())
print(json.dumps(out))
"""


def _hashes(mode: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_features_are_bitwise_equal_on_one_and_two_threads():
    one, two = _hashes("plain")
    assert one == two
    perturbed_one, perturbed_two = _hashes("perturbed")
    assert perturbed_one == perturbed_two
    assert perturbed_one != one  # the comparison sees a change in the last bit of one weight
