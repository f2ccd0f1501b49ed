"""Prototype, not part of the workflow: the synthetic export's trilinear resampling as numba kernels, against the
current torch path, on synthetic data of the export's sizes (one thread). Needs numba, which the project does not
depend on: run it in a separate venv (``python -m venv /tmp/nb && /tmp/nb/bin/pip install torch==2.13.0 numba
numpy``). Measured 2026-12-07 (benchmarks/RESULTS.md, "Exact speed-ups measured on 2026-12-07"):

* the person warp (``synth.lesions.Canvas.warp``): 5 uint8 channels at 2 million near-raster points, weights computed
  once per point; against the float32 copy of the box, the grid array and ``grid_sample``;
* the renderer (``synth.phantom.render``): one 32 x 256 x 256 series with two samples per slice, positions computed
  on the fly; against the grid array, ``grid_sample`` and the mean over the samples.

Prints each timing, the ratio and the largest difference of the values (a kernel whose values differed would not
be a replacement). Usage: python benchmarks/prototypes/numba_resampling.py
"""

from __future__ import annotations

import time

import numba
import numpy as np
import torch


@numba.njit(cache=False)
def warp_u8(src, sz, sy, sx, out):
    """src [C, D, H, W] uint8 sampled at index positions (sz, sy, sx) [N] -> out [C, N] float32 (border clamp)."""
    n_c, d, h, w = src.shape
    for p in range(sz.shape[0]):
        z = min(max(sz[p], 0.0), d - 1.0)
        y = min(max(sy[p], 0.0), h - 1.0)
        x = min(max(sx[p], 0.0), w - 1.0)
        z0, y0, x0 = min(int(z), d - 2), min(int(y), h - 2), min(int(x), w - 2)
        fz, fy, fx = z - z0, y - y0, x - x0
        for c in range(n_c):
            s = src[c]
            out[c, p] = (
                (1 - fz) * ((1 - fy) * ((1 - fx) * s[z0, y0, x0] + fx * s[z0, y0, x0 + 1]))
                + (1 - fz) * (fy * ((1 - fx) * s[z0, y0 + 1, x0] + fx * s[z0, y0 + 1, x0 + 1]))
                + fz * ((1 - fy) * ((1 - fx) * s[z0 + 1, y0, x0] + fx * s[z0 + 1, y0, x0 + 1]))
                + fz * (fy * ((1 - fx) * s[z0 + 1, y0 + 1, x0] + fx * s[z0 + 1, y0 + 1, x0 + 1]))
            )


def warp_torch(src, sz, sy, sx):
    """The current path: float32 copy, normalised grid, ``grid_sample`` (border padding)."""
    d, h, w = src.shape[1:]
    srcf = torch.from_numpy(src.astype(np.float32))[None]
    grid = np.stack([2 * sx / (w - 1) - 1, 2 * sy / (h - 1) - 1, 2 * sz / (d - 1) - 1], -1).astype(np.float32)
    out = torch.nn.functional.grid_sample(
        srcf, torch.from_numpy(grid)[None, None, None], mode="bilinear", padding_mode="border", align_corners=True
    )
    return out[0, :, 0, 0].numpy()


@numba.njit(cache=False)
def render_nb(vol, m, step, offs, n_slices, rows, cols, out):
    """vol [D, H, W] sampled at m @ (i, j, k, 1) + step * offset, averaged over the offsets (zero outside)."""
    d, h, w = vol.shape
    for k in range(n_slices):
        for j in range(rows):
            for i in range(cols):
                acc = 0.0
                for o in offs:
                    x = m[0, 0] * i + m[0, 1] * j + m[0, 2] * k + m[0, 3] + step[0] * o
                    y = m[1, 0] * i + m[1, 1] * j + m[1, 2] * k + m[1, 3] + step[1] * o
                    z = m[2, 0] * i + m[2, 1] * j + m[2, 2] * k + m[2, 3] + step[2] * o
                    x0, y0, z0 = int(np.floor(x)), int(np.floor(y)), int(np.floor(z))
                    fx, fy, fz = x - x0, y - y0, z - z0
                    v = 0.0
                    for dz in range(2):
                        zz = z0 + dz
                        if zz < 0 or zz >= d:
                            continue
                        wz = fz if dz else 1.0 - fz
                        for dy in range(2):
                            yy = y0 + dy
                            if yy < 0 or yy >= h:
                                continue
                            wy = fy if dy else 1.0 - fy
                            for dx in range(2):
                                xx = x0 + dx
                                if xx < 0 or xx >= w:
                                    continue
                                v += wz * wy * (fx if dx else 1.0 - fx) * vol[zz, yy, xx]
                    acc += v
                out[k, j, i] = acc / offs.shape[0]


def render_torch(vol, m, step, offs, n_slices, rows, cols):
    """The current path of ``synth.phantom.render``: the grid array, ``grid_sample`` (zeros), the mean."""
    dims = np.array(vol.shape[::-1], dtype=np.float64)
    i = np.arange(cols, dtype=np.float32)[None, None, :]
    j = np.arange(rows, dtype=np.float32)[None, :, None]
    k = np.arange(n_slices, dtype=np.float32)[:, None, None]
    grid = np.empty((len(offs), n_slices, rows, cols, 3), np.float32)
    for s, o in enumerate(offs):
        for r in range(3):
            sc = 2.0 / (dims[r] - 1)
            grid[s, ..., r] = (
                np.float32(m[r, 0] * sc) * i
                + np.float32(m[r, 1] * sc) * j
                + np.float32(m[r, 2] * sc) * k
                + np.float32((m[r, 3] + step[r] * o) * sc - 1.0)
            )
    src = torch.from_numpy(vol)[None, None]
    g = torch.from_numpy(grid.reshape(1, len(offs) * n_slices, rows, cols, 3))
    out = torch.nn.functional.grid_sample(src, g, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[0, 0].numpy().reshape(len(offs), n_slices, rows, cols).mean(0)


def best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    rng = np.random.default_rng(0)
    # the person warp: the brain box of the head grid, 5 channels, 2 million voxels moved by a few mm
    c, d, h, w, n = 5, 181, 225, 161, 2_000_000
    src = rng.integers(0, 256, (c, d, h, w), dtype=np.uint8)
    kz, ky, kx = np.unravel_index(np.sort(rng.choice(d * h * w, n, replace=False)), (d, h, w))
    sz, sy, sx = ((a + rng.normal(0, 1.5, n)).astype(np.float32) for a in (kz, ky, kx))
    out = np.empty((c, n), np.float32)
    warp_u8(src, sz, sy, sx, out)  # compile
    ref = warp_torch(src, sz, sy, sx)
    t_nb, t_torch = best(lambda: warp_u8(src, sz, sy, sx, out)), best(lambda: warp_torch(src, sz, sy, sx))
    print(
        f"warp: numba {t_nb:.3f} s, current path {t_torch:.3f} s, ratio {t_nb / t_torch:.3f}, "
        f"max difference {np.abs(ref - out).max():.2e} (values 0-255), rounded values equal "
        f"{(np.round(ref) == np.round(out)).mean():.6f}"
    )
    # the renderer: a 32 x 256 x 256 series, 0.9 mm pixels, 5 mm slices, rotated 12 degrees, two samples per slice
    vol = rng.random((197, 225, 189), dtype=np.float32) * 100
    a = np.deg2rad(12.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    lin = rot @ np.diag([0.9, 0.9, 5.0])
    n_slices, rows, cols = 32, 256, 256
    m = np.zeros((3, 4))
    m[:, :3] = lin
    m[:, 3] = np.array([189, 225, 197]) / 2 - lin @ np.array([cols, rows, n_slices]) / 2
    step, offs = lin[:, 2].copy(), np.array([-0.25, 0.25])
    img = np.empty((n_slices, rows, cols), np.float32)
    render_nb(vol, m, step, offs, n_slices, rows, cols, img)  # compile
    ref = render_torch(vol, m, step, offs, n_slices, rows, cols)
    t_nb = best(lambda: render_nb(vol, m, step, offs, n_slices, rows, cols, img))
    t_torch = best(lambda: render_torch(vol, m, step, offs, n_slices, rows, cols))
    print(
        f"render: numba {t_nb:.3f} s, current path {t_torch:.3f} s, ratio {t_nb / t_torch:.3f}, "
        f"max difference {np.abs(ref - img).max():.2e} (values 0-100)"
    )


if __name__ == "__main__":
    main()
