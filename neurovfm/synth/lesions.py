"""Drawing primitives for findings: the patient canvas, soft-edged shapes, tissue layers and warps.

Everything works in the patient's native frame (template space in LPS mm, see ``anatomy``). A finding
either edits the base tissue fractions (fracture lines, enlarged ventricles), moves tissue with a smooth
backward displacement field (mass effect, midline shift, tonsillar descent), or adds a *layer*: a
fractional map of a lesion tissue inside a box that replaces whatever lies beneath it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage as ndi

from .anatomy import BRAIN_CHANNELS, CH, Anatomy
from .resample import moving_bounds, warp_moving

SIZE_INDEX = {"small": 0, "medium": 1, "large": 2}
BRAIN_CENTRE = np.array([0.0, 18.0, 15.0])  # native mm, near the foramina of Monro
# outward directions (native, for the left side: +x) towards named convexities
CONVEXITY = {
    "frontal": (0.55, -0.75, 0.45),
    "frontoparietal": (0.75, -0.2, 0.65),
    "parietal": (0.7, 0.25, 0.7),
    "temporal": (1.0, -0.1, -0.25),
    "temporoparietal": (0.95, 0.2, 0.2),
    "occipital": (0.45, 0.9, 0.2),
}


@dataclass(eq=False)
class Layer:
    tissue: str
    box: tuple  # (z, y, x) slices into the anatomy grid
    frac: np.ndarray  # float32 in [0, 1], shape of the box


@dataclass(eq=False)
class Canvas:
    """A patient while it is being built: its own copy of the base fractions plus lesion layers."""

    anat: Anatomy
    frac: np.ndarray
    vent: np.ndarray
    layers: list = field(default_factory=list)
    csf_dist: np.ndarray | None = None  # this brain's mm from parenchyma to CSF once its anatomy moved; None: the
    # template's (``anat.csf_dist``). Warps move it with the tissue, so atrophy erodes this brain's own sulci

    def coords(self, box):
        return self.anat.axes_native(box)

    def sulcal_distance(self) -> np.ndarray:
        """mm from parenchyma to the nearest CSF (0 elsewhere) of this brain."""
        return self.anat.csf_dist if self.csf_dist is None else self.csf_dist

    def parenchyma(self, box) -> np.ndarray:
        return (self.frac[CH["gm"]][box].astype(np.float32) + self.frac[CH["wm"]][box]) / 255.0

    def channel(self, name: str, box) -> np.ndarray:
        return self.frac[CH[name]][box].astype(np.float32) / 255.0

    def add(self, tissue: str, box, frac: np.ndarray) -> float:
        """Add a lesion layer; returns its volume in mm^3 (native)."""
        frac = np.clip(frac, 0.0, 1.0).astype(np.float32)
        self.layers.append(Layer(tissue, box, frac))
        return float(frac.sum())

    def replace_base(self, box, frac: np.ndarray, channel: str) -> None:
        """Turn a fraction of each voxel of the base maps into one base tissue (e.g. bone -> soft)."""
        f = np.clip(frac, 0.0, 1.0)
        hit = f > 0.002
        if not hit.any():
            return
        sub = self.frac[(slice(None),) + tuple(box)]
        w = f[hit].astype(np.float32)
        vals = sub[:, hit].astype(np.float32) * (1.0 - w)
        vals[CH[channel]] += 255.0 * w
        sub[:, hit] = np.clip(np.round(vals), 0, 255).astype(np.uint8)

    def warp(self, box, u, channels=BRAIN_CHANNELS, with_vent: bool = True, tol_mm: float = 0.05) -> None:
        """Move tissue by a native-mm displacement field ``u = (ux, uy, uz)`` given on ``box``:
        the new map at p is the old map at p - u(p). Only voxels moving more than ``tol_mm`` are resampled."""
        shape_box = tuple(s.stop - s.start for s in box)
        # contiguous read-only float32, whatever the caller passed (the lesion warps pass scalars for some axes): one
        # compiled signature of the kernels (numba types a read-only array apart from a writable one)
        ux, uy, uz = (
            _read_only(np.ascontiguousarray(np.broadcast_to(np.asarray(c, np.float32), shape_box))) for c in u
        )
        start = np.array([s.start for s in box], np.int64)
        tol = np.float32(tol_mm)
        count, smin, smax = moving_bounds(ux, uy, uz, start, tol)
        if count == 0:
            return
        lo = [int(max(0, np.floor(v) - 1)) for v in smin]  # the region the moving voxels sample from
        hi = [int(min(n, np.ceil(v) + 2)) for v, n in zip(smax, self.anat.shape)]
        big = tuple(slice(a, b) for a, b in zip(lo, hi))
        chans = list(channels)
        dims = [b - a for a, b in zip(lo, hi)]
        carry = self.csf_dist is not None  # this brain's sulcal distances move with it
        src = np.empty((len(chans) + int(with_vent) + int(carry), *dims), np.float32)
        src[: len(chans)] = self.frac[(slice(None),) + big][chans]  # the box first: no copy of whole maps
        if with_vent:
            src[len(chans)] = self.vent[big]
        if carry:
            src[-1] = self.csf_dist[big]
        dist = self.csf_dist if carry else np.empty((0, 0, 0), np.float32)
        warp_moving(
            ux, uy, uz, start, tol, np.array(lo, np.int64), src, self.frac, np.array(chans, np.int64),
            self.vent, dist, with_vent, carry,
        )  # fmt: skip


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def pick(size: str, values, rng: np.random.Generator, jitter: float = 0.15) -> float:
    if size not in SIZE_INDEX:
        raise ValueError(f"unknown size {size!r}; expected small, medium or large")
    return float(values[SIZE_INDEX[size]] * rng.uniform(1.0 - jitter, 1.0 + jitter))


def side_sign(side: str) -> float:
    """+1 for the patient's left (native +x), -1 for the right."""
    return 1.0 if side == "left" else -1.0


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def jitter_dir(v, rng: np.random.Generator, sd: float = 0.15) -> np.ndarray:
    return unit(unit(v) + rng.normal(0.0, sd, 3))


def inner_table_point(anat: Anatomy, direction, origin=BRAIN_CENTRE, offset_mm: float = 0.0) -> np.ndarray:
    """March from ``origin`` along ``direction`` to the inner table of the skull (sdist = 0), then move
    ``offset_mm`` further along the ray (negative: back inside)."""
    d = unit(direction)
    for t in np.arange(0.0, 160.0, 0.5):
        p = origin + t * d
        idx = np.round(anat.native_to_index(p)).astype(int)
        if np.any(idx < 0) or np.any(idx >= anat.shape) or anat.sdist[tuple(idx)] >= 0:
            return origin + (t + offset_mm) * d
    raise RuntimeError(f"no inner table found along {direction}")


def blob(
    cv: Canvas, box, center, radii, rng: np.random.Generator, rough: float = 0.2, axes=None, edge_mm: float = 1.0
) -> np.ndarray:
    """Soft-edged irregular ellipsoid: radius modulated by a few random low-frequency lobes."""
    x, y, z = cv.coords(box)
    rot = np.eye(3) if axes is None else np.asarray(axes, dtype=float)
    d = [x - center[0], y - center[1], z - center[2]]
    q = [sum(rot[r, c] * d[c] for c in range(3)) / radii[r] for r in range(3)]
    rho = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2) + 1e-6
    mod = np.ones_like(rho)
    for _ in range(4):
        k = rng.normal(size=3)
        mod = mod + rough / 2 * np.sin((k[0] * q[0] + k[1] * q[1] + k[2] * q[2]) / rho * 2.0 + rng.uniform(0, 6.3))
    mean_r = float(np.mean(radii))
    return np.clip((mod - rho) * mean_r / edge_mm + 0.5, 0.0, 1.0).astype(np.float32)


def inside_cavity(cv: Canvas, box, margin_mm: float = 0.5) -> np.ndarray:
    return np.clip(-cv.anat.sdist[box] - margin_mm + 0.5, 0.0, 1.0)


def push(cv: Canvas, center, radius: float, amount: float, side: float | None = None) -> None:
    """Radial mass effect: tissue at ``radius`` moves outward by ``amount`` mm, decaying with distance,
    fading to zero at the inner table and (for a lateral mass, ``side`` = its sign) at the falx."""
    if amount <= 0.1:
        return
    box = cv.anat.box(center, 2.6 * radius)
    x, y, z = cv.coords(box)
    d = [x - center[0], y - center[1], z - center[2]]
    rho = np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2) + 1e-3
    g = np.where(rho < radius, rho / radius, (radius / rho) ** 3) * amount / rho
    g = g * np.clip(-cv.anat.sdist[box] / 8.0, 0, 1)
    if side is not None:
        g = g * np.clip(side * x / 10.0, 0, 1)
    cv.warp(box, (g * d[0], g * d[1], g * d[2]))


def centroid(cv: Canvas, box, frac: np.ndarray) -> np.ndarray:
    x, y, z = cv.coords(box)
    w = float(frac.sum())
    if w <= 0:
        raise RuntimeError("empty lesion: nothing was drawn")
    return np.array([(frac * x).sum() / w, (frac * y).sum() / w, (frac * z).sum() / w])


def normal_at(anat: Anatomy, p) -> np.ndarray:
    """Outward normal of the inner table near a native point (gradient of the signed distance)."""
    idx = np.round(anat.native_to_index(p)).astype(int)
    sl = tuple(slice(max(i - 2, 0), i + 3) for i in idx)
    gz, gy, gx = (g.mean() for g in np.gradient(anat.sdist[sl]))
    return unit([-gx, -gy, gz])


def ventricle_dilate(cv: Canvas, radius: float, box=None, side: float | None = None) -> None:
    """Enlarge the ventricles by ``radius`` mm (turn the surrounding parenchyma into CSF), sparing the
    septum pellucidum and the posterior fossa."""
    if radius <= 0.05:
        return
    if box is None:
        nz = np.argwhere(cv.vent)
        lo, hi = nz.min(0), nz.max(0) + 1
        r = int(np.ceil(radius)) + 2
        box = tuple(slice(max(0, a - r), min(n, b + r)) for a, b, n in zip(lo, hi, cv.anat.shape))
    dist = ndi.distance_transform_edt(~cv.vent[box]).astype(np.float32)
    x, y, z = cv.coords(box)
    f = np.clip(radius - dist + 0.5, 0, 1) * (cv.anat.sdist[box] < -6)
    f = f * (np.abs(x) > 1.2) * ~cv.anat.region("posterior_fossa")[box]
    if side is not None:
        f = f * np.clip(side * x / 4.0, 0, 1)
    cv.replace_base(box, f, "csf")
    cv.vent[box] |= f > 0.5


def perilesional_edema(cv: Canvas, box, center, radii, margin_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Vasogenic edema around a lesion: an irregular halo reaching ``margin_mm`` beyond ``radii`` that spreads
    along white matter (finger-like) more than through cortex. Adds an ``edema`` layer; returns its fraction.

    Real edema grows with the lesion (perihematomal edema about the clot's volume; around high-grade tumours and
    metastases often wider than the tumour itself), so callers scale ``margin_mm`` with the radius."""
    if margin_mm <= 0.5:
        return np.zeros(cv.vent[box].shape, np.float32)
    halo = blob(cv, box, center, np.asarray(radii, float) + margin_mm, rng, 0.35, edge_mm=max(2.0, margin_mm / 4))
    spread = np.clip(1.3 * cv.channel("wm", box) + 0.35 * cv.channel("gm", box), 0.0, 1.0)
    frac = halo * spread * inside_cavity(cv, box, 2.0)
    cv.add("edema", box, frac)
    return frac


def falx_shift(cv: Canvas, side: float, amount: float) -> None:
    """Subfalcine shift: the supratentorial midline structures (septum, third ventricle, medial hemispheres)
    move ``amount`` mm towards ``side`` (+1 the patient's left), fading away from the midline and the vertex."""
    if amount <= 0.1:
        return
    box = cv.anat.box(BRAIN_CENTRE + [0, 0, 14], (50, 100, 62))
    x, y, z = cv.coords(box)
    u = side * amount * np.exp(-(x**2) / (2 * 18.0**2)) * np.exp(-(((z - 14.0) / 32.0) ** 2))
    u = u * np.clip(-cv.anat.sdist[box] / 20.0, 0, 1) * ~cv.anat.region("posterior_fossa")[box]
    cv.warp(box, (u, 0.0, 0.0))


def efface_sulci(cv: Canvas, amount: float) -> None:
    """Raised pressure (hydrocephalus, diffuse swelling) closes the sulci: a share ``amount`` of the
    subarachnoid CSF over the hemispheres (not the ventricles) becomes grey matter."""
    if amount <= 0.01:
        return
    box = cv.anat.box(BRAIN_CENTRE + [0, 0, -5], (80, 115, 90))
    sulcal = (cv.anat.sdist[box] < -1.5) & ~cv.vent[box] & ~cv.anat.region("posterior_fossa")[box]
    f = np.clip(amount, 0.0, 1.0) * cv.channel("csf", box) * sulcal
    cv.replace_base(box, f, "gm")


def periventricular_rim(cv: Canvas, width_mm: float, rng: np.random.Generator) -> float:
    """Transependymal (interstitial) edema of acute hydrocephalus: a smooth rim of ``edema`` in the white matter
    within ``width_mm`` of the lateral ventricles, widest at the horns. Returns its volume in mm^3."""
    if width_mm <= 0.3:
        return 0.0
    nz = np.argwhere(cv.vent)
    r = int(np.ceil(width_mm)) + 3
    lo, hi = nz.min(0) - r, nz.max(0) + r + 1
    box = tuple(slice(int(max(a, 0)), int(min(b, n))) for a, b, n in zip(lo, hi, cv.anat.shape))
    dist = ndi.distance_transform_edt(~cv.vent[box]).astype(np.float32)
    w = width_mm * rng.uniform(0.8, 1.2)
    frac = np.clip((w - dist) / 2.0 + 0.5, 0.0, 1.0) * (dist > 0) * cv.channel("wm", box)
    return cv.add("edema", box, frac)


def vary_anatomy(cv: Canvas, rng: np.random.Generator, amplitude_mm: float, wavelength_mm=(45.0, 110.0)) -> None:
    """Anatomy that differs between people beyond a pose: a smooth random displacement of the brain inside the
    skull (gyri, ventricles and deep nuclei move in spatially correlated ways, root-mean-square about 0.7 x
    ``amplitude_mm`` per axis; zero at the inner table, so the skull keeps its shape) and an asymmetry of the lateral
    ventricles.

    The displacement is a sum of four random plane waves per axis with wavelengths in ``wavelength_mm``."""
    if amplitude_mm <= 0.0:
        return
    if cv.csf_dist is None:
        cv.csf_dist = cv.anat.csf_dist.copy()  # moved with the brain from here on
    box = cv.anat.box(BRAIN_CENTRE + [0, 0, -5], (80, 115, 90))
    x, y, z = cv.coords(box)
    fade = np.clip(-cv.anat.sdist[box] / 10.0, 0.0, 1.0)
    step = 4  # the field is smooth: evaluate it every 4 mm, then interpolate (a sixtieth of the sines)
    xc, yc, zc = x[..., ::step], y[:, ::step], z[::step]
    coarse = np.zeros((3, zc.shape[0], yc.shape[1], xc.shape[2]), np.float32)
    for axis in range(3):
        for _wave in range(4):
            k = unit(rng.normal(size=3)) * (2 * np.pi / rng.uniform(*wavelength_mm))
            coarse[axis] += np.sin(k[0] * xc + k[1] * yc + k[2] * zc + rng.uniform(0, 2 * np.pi))
    full_shape = fade.shape
    span = [(n - 1) // step * step + 1 for n in full_shape]  # the extent the coarse samples cover exactly
    dense = torch.nn.functional.interpolate(
        torch.from_numpy(coarse)[None], size=tuple(span), mode="trilinear", align_corners=True
    )[0].numpy()
    pad = [(0, 0)] + [(0, n - m) for n, m in zip(full_shape, span)]
    dense = np.pad(dense, pad, mode="edge")
    cv.warp(box, tuple(dense[a] * np.float32(amplitude_mm / 2.0) * fade for a in range(3)))
    # normal asymmetry of the lateral ventricles (one side up to about 2 mm wider)
    ventricle_dilate(cv, abs(rng.normal(0.0, 0.8)), side=1.0 if rng.random() < 0.5 else -1.0)
