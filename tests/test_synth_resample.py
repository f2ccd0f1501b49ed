"""The export's compiled sampling (neurovfm.synth.resample) gives grid_sample's numbers bit for bit.

References are the array code the kernels replaced (neurovfm.synth.resample_reference: float32 grids and
``torch.nn.functional.grid_sample``). Positive
controls: the same references with the sampling points formed in float64 differ from the float32 ones, so an exact
comparison here does see last-bit changes of the arithmetic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from neurovfm.synth.anatomy import BRAIN_CHANNELS
from neurovfm.synth.lesions import Canvas
from neurovfm.synth.resample import render_grid
from neurovfm.synth.resample_reference import render_grid_torch, warp_torch


def _coef(rng, n_sub, extent):
    """An oblique slice grid of ``extent`` (cols, rows, slices) points that runs partly outside the volume (so
    zeros padding is exercised), one grid per sample through the slice."""
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    coef = np.empty((n_sub, 3, 4), np.float32)
    for s in range(n_sub):
        for r in range(3):
            coef[s, r, :3] = q[r] * 2.2 / np.asarray(extent)
            centre = coef[s, r, :3] @ ((np.asarray(extent) - 1) / 2.0)
            coef[s, r, 3] = rng.uniform(-0.2, 0.2) - centre + 0.05 * s  # the grid's centre near the volume's
    return coef


@pytest.mark.parametrize("n_sub", [1, 2, 3])
def test_render_grid_equals_grid_sample(n_sub):
    rng = np.random.default_rng(n_sub)
    vol = rng.normal(size=(21, 26, 30)).astype(np.float32) * 100
    coef = _coef(rng, n_sub, (35, 33, 9))
    out = np.empty((9, 33, 35), np.float32)
    render_grid(vol, coef, 9, 33, 35, out)
    ref = render_grid_torch(vol, coef, 9, 33, 35)
    assert (out == 0).mean() > 0.05 and (out != 0).mean() > 0.5  # points inside and outside the volume
    np.testing.assert_array_equal(out, ref)
    # positive control: the grid formed in float64 moves last bits, and the exact comparison sees it
    assert not np.array_equal(render_grid_torch(vol, coef, 9, 33, 35, grid_dtype=np.float64), ref)


def _canvas(rng, shape, carry):
    frac = rng.integers(0, 256, size=(8, *shape), dtype=np.uint8)
    vent = rng.random(shape) < 0.3
    dist = rng.uniform(0, 12, size=shape).astype(np.float32) if carry else None
    return Canvas(SimpleNamespace(shape=shape), frac, vent, csf_dist=dist)


def _copy(cv: Canvas) -> Canvas:
    dist = None if cv.csf_dist is None else cv.csf_dist.copy()
    return Canvas(cv.anat, cv.frac.copy(), cv.vent.copy(), csf_dist=dist)


def _same(a: Canvas, b: Canvas) -> bool:
    same = np.array_equal(a.frac, b.frac) and np.array_equal(a.vent, b.vent)
    return same and (a.csf_dist is None or np.array_equal(a.csf_dist, b.csf_dist))


@pytest.mark.parametrize(
    ("field", "channels", "with_vent", "carry"),
    [
        ("smooth", BRAIN_CHANNELS, True, True),  # the person's own anatomy
        ("smooth", BRAIN_CHANNELS, True, False),
        ("scalars", BRAIN_CHANNELS, True, False),  # a falx shift: one axis an array, two axes scalars
        ("smooth", (0, 3, 6), False, True),
        ("edge", BRAIN_CHANNELS, True, True),  # sources beyond the volume: border padding
    ],
)
def test_warp_equals_grid_sample(field, channels, with_vent, carry):
    rng = np.random.default_rng(7)
    shape = (24, 28, 26)
    box = (slice(2, 22), slice(0, 25), slice(3, 26))
    bshape = tuple(s.stop - s.start for s in box)
    z, y, x = np.meshgrid(*(np.linspace(0, 1, n) for n in bshape), indexing="ij")
    wave = np.sin(6 * x + 2 * y) * np.cos(4 * z)
    if field == "smooth":
        u = (2.5 * wave, -1.5 * np.cos(5 * y), 3.0 * wave * z)
    elif field == "scalars":
        u = (2.2 * wave, 0.0, 0.0)
    else:
        u = (np.full(bshape, 6.0), np.full(bshape, -5.0), np.full(bshape, -7.0))
    u = tuple(np.asarray(c, np.float32) if np.ndim(c) else c for c in u)
    cv = _canvas(rng, shape, carry)
    ref, ctrl = _copy(cv), _copy(cv)
    cv.warp(box, u, channels=channels, with_vent=with_vent)
    warp_torch(ref, box, u, channels, with_vent)
    assert not np.array_equal(cv.frac, _canvas(np.random.default_rng(7), shape, carry).frac)  # something moved
    assert _same(cv, ref)
    if field == "smooth" and carry:  # positive control: sources formed in float64 move some voxels' values
        warp_torch(ctrl, box, u, channels, with_vent, grid_dtype=np.float64)
        assert not _same(ctrl, ref)


def test_warp_below_tolerance_moves_nothing():
    rng = np.random.default_rng(3)
    cv = _canvas(rng, (10, 12, 11), carry=True)
    before = _copy(cv)
    cv.warp((slice(1, 9), slice(2, 10), slice(0, 11)), (0.01, 0.02, 0.01))  # |u| sums to 0.04 < 0.05 mm
    assert _same(cv, before)


def test_the_export_compiles_one_signature_of_each_kernel(tmp_path):
    """Fields passed as scalars or arrays reach the kernels with one set of types, so a process compiles each kernel
    once, ahead of its workers (``compile_kernels``). In a fresh interpreter with an empty kernel cache: warps
    with every mix of scalar and array axes add no signature to the ones ``compile_kernels`` made; a writable field
    (the types such a mix used to produce) does, the positive control that the count sees a second signature."""
    code = """
import json
import numpy as np
from types import SimpleNamespace
from neurovfm.synth import resample
from neurovfm.synth.lesions import Canvas
resample.compile_kernels()
counts = lambda: [len(k.signatures) for k in (resample.render_grid, resample.moving_bounds, resample.warp_moving)]
first = counts()
rng = np.random.default_rng(0)
shape = (10, 12, 11)
dist = rng.uniform(0, 12, size=shape).astype(np.float32)
cv = Canvas(SimpleNamespace(shape=shape), rng.integers(0, 256, (8, *shape), dtype=np.uint8), rng.random(shape) < 0.3,
            csf_dist=dist)
box = (slice(1, 9), slice(2, 10), slice(0, 11))
a = rng.normal(0, 0.8, (8, 8, 11)).astype(np.float32)
for u in [(0.0, 0.0, a), (a, 0.5, 0.0), (a, a, a), (0.7, -0.6, 0.4)]:
    cv.warp(box, u)
after = counts()
field = np.ones((2, 2, 2), np.float32)
resample.moving_bounds(field, field, field, np.zeros(3, np.int64), np.float32(0.05))
print(json.dumps([first, after, counts()]))
"""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    first, after, control = json.loads(out.stdout.strip().splitlines()[-1])
    assert first == [1, 1, 1] and after == first
    assert control == [1, 2, 1]
