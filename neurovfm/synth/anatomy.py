"""Head anatomy for the synthetic scanner, derived once from the MNI152 templates shipped with nilearn.

The templates are skull-stripped brain maps (GM, WM probabilities and a brain mask, 1 mm). From them we
derive fractional tissue maps for a whole head: CSF, grey and white matter, dura (with the falx), skull
(cortical tables and diploe), scalp (fat and skin/muscle), and a short spinal cord below the template
so the foramen magnum and the cerebellar tonsils have room.

Frames: the maps live on a 1-mm grid whose array axes are (z, y, x) of MNI space. The patient's
*native* frame is the same space expressed in DICOM LPS (x to the patient's left, y posterior, z
superior), so ``native = (-x_mni, -y_mni, z_mni)``. ``Anatomy.index_to_native`` maps array indices
given as (kx, ky, kz) (note: reversed axis order, the order torch's grid_sample expects) to native mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi

# Base tissue channels stored per voxel as uint8 fractions (x 1/255). Air is what is left over.
CHANNELS = ("csf", "gm", "wm", "dura", "bone", "diploe", "fat", "soft")
CH = {name: i for i, name in enumerate(CHANNELS)}
BRAIN_CHANNELS = (CH["csf"], CH["gm"], CH["wm"], CH["dura"])  # what mass effect moves


@dataclass(eq=False)
class Anatomy:
    frac: np.ndarray  # uint8 (C, Z, Y, X), fractions x 255 in CHANNELS order
    vent: np.ndarray  # bool (Z, Y, X): lateral + third ventricles
    sdist: np.ndarray  # float32 (Z, Y, X): signed mm to the inner table (<0 inside the cranial cavity)
    csf_dist: np.ndarray  # float32 (Z, Y, X): mm from parenchyma to the nearest CSF (0 elsewhere)
    origin_mni: np.ndarray  # MNI mm (x, y, z) of index (0, 0, 0)
    skull_mm: float
    scalp_mm: float
    foramen_z: float  # native z (mm) of the foramen magnum plane
    _regions: dict = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.vent.shape

    @property
    def index_to_native(self) -> np.ndarray:
        """4x4 affine: (kx, ky, kz, 1) -> native LPS mm."""
        a = np.diag([-1.0, -1.0, 1.0, 1.0])
        a[:3, 3] = self.origin_mni * np.array([-1.0, -1.0, 1.0])
        return a

    def axes_native(self, box: tuple[slice, slice, slice] | None = None):
        """Native coordinates along each array axis, broadcastable to (Z, Y, X) (or to a box of it)."""
        z0, y0, x0 = (0, 0, 0) if box is None else (box[0].start, box[1].start, box[2].start)
        nz, ny, nx = self.shape if box is None else (box[0].stop - z0, box[1].stop - y0, box[2].stop - x0)
        xs = -(self.origin_mni[0] + np.arange(x0, x0 + nx, dtype=np.float32))
        ys = -(self.origin_mni[1] + np.arange(y0, y0 + ny, dtype=np.float32))
        zs = self.origin_mni[2] + np.arange(z0, z0 + nz, dtype=np.float32)
        return xs[None, None, :], ys[None, :, None], zs[:, None, None]

    def native_to_index(self, p) -> np.ndarray:
        """Native LPS mm (x, y, z) -> fractional array index (z, y, x)."""
        x, y, z = np.asarray(p, dtype=float)
        o = self.origin_mni
        return np.array([z - o[2], -y - o[1], -x - o[0]])

    def box(self, center, half_mm) -> tuple[slice, slice, slice]:
        """Array box (z, y, x slices) around a native point, clipped to the grid."""
        c = self.native_to_index(center)
        h = np.broadcast_to(np.asarray(half_mm, dtype=float), (3,))[::-1]  # given as x, y, z
        out = []
        for ci, hi, n in zip(c, h, self.shape):
            lo, hi_ = int(max(0, np.floor(ci - hi))), int(min(n, np.ceil(ci + hi) + 1))
            out.append(slice(lo, max(lo + 1, hi_)))
        return tuple(out)

    def region(self, name: str) -> np.ndarray:
        """Boolean map of a named region: left/right_hemisphere, posterior_fossa, basal_ganglia, ventricles,
        intracranial, brain."""
        if name not in self._regions:
            x, y, z = self.axes_native()
            inside = self.sdist < 0
            brain = (self.frac[CH["gm"]].astype(np.uint16) + self.frac[CH["wm"]]) > 127
            fossa = inside & _fossa(y, z)
            masks = {
                "intracranial": inside,
                "brain": brain,
                "ventricles": self.vent,
                "posterior_fossa": fossa,
                "left_hemisphere": inside & ~fossa & (x > 0),
                "right_hemisphere": inside & ~fossa & (x < 0),
                "basal_ganglia": brain
                & (np.abs(x) > 10)
                & (np.abs(x) < 32)
                & (y > -22)
                & (y < 12)
                & (z > -8)
                & (z < 16),
            }
            if name not in masks:
                raise KeyError(f"unknown region {name!r}; known: {sorted(masks)}")
            self._regions[name] = masks[name]
        return self._regions[name]


def lobe_of(p) -> str:
    """Coarse lobe / structure name for a native point (no side)."""
    x, y, z = (float(v) for v in p)
    if _fossa(y, z):
        return "cerebellum" if abs(x) > 8 else "posterior fossa"
    if 8 < abs(x) < 32 and -22 < y < 12 and -8 < z < 16:
        return "basal ganglia"
    if y > 68:
        return "occipital lobe"
    if z < 2 and abs(x) > 28 and y > -20:
        return "temporal lobe"
    if y < -8:
        return "frontal lobe"
    return "parietal lobe"


def _fossa(y, z):
    """Below the tentorium (native mm): it slopes down from the incisura to the transverse sinus."""
    return (z < -10 - 0.3 * (y - 45)) & (y > 28)


def side_of(p, midline_mm: float = 3.0) -> str:
    x = float(p[0])
    return "midline" if abs(x) < midline_mm else ("left" if x > 0 else "right")


def describe(p, kind_phrase: str | None = None) -> str:
    """Short anatomical phrase for a native point, e.g. 'right frontal lobe'."""
    side = side_of(p)
    what = kind_phrase or lobe_of(p)
    return what if side == "midline" else f"{side} {what}"


@lru_cache(maxsize=2)
def load_anatomy(
    margin_mm: int = 22,
    below_mm: int = 20,
    skull_mm: float = 6.5,
    scalp_mm: float = 5.0,
    foramen_z_mni: float = -60.0,
    foramen_radius_mm: float = 14.0,
) -> Anatomy:
    """Build (once per process) the head maps from nilearn's MNI152 templates; nothing is downloaded."""
    from nilearn import datasets

    gm = _zyx(datasets.load_mni152_gm_template(resolution=1))
    wm = _zyx(datasets.load_mni152_wm_template(resolution=1))
    mask = _zyx(datasets.load_mni152_brain_mask(resolution=1)) > 0
    affine = datasets.load_mni152_brain_mask(resolution=1).affine
    # crop to the brain with room for skull, scalp and swelling; pad below for the cervicomedullary junction
    nz = np.argwhere(mask)
    lo, hi = nz.min(0), nz.max(0) + 1
    pad_lo = np.array([below_mm, margin_mm, margin_mm])
    pad_hi = np.array([margin_mm, margin_mm, margin_mm])
    shape = tuple(hi - lo + pad_lo + pad_hi)
    dst = tuple(slice(int(p), int(p + h - l)) for p, h, l in zip(pad_lo, hi, lo))
    src = tuple(slice(int(l), int(h)) for l, h in zip(lo, hi))

    def place(a, dtype):
        out = np.zeros(shape, dtype)
        out[dst] = a[src]
        return out

    gm, wm, mask = place(gm, np.float32), place(wm, np.float32), place(mask, bool)
    origin_vox = lo[::-1] - pad_lo[::-1]  # (x, y, z) template voxel of index 0
    origin_mni = affine[:3, :3] @ origin_vox + affine[:3, 3]
    zc = dst[0].start  # first template slice: extend the brainstem below it as a cord
    bottom = mask[zc]
    if bottom.any():
        stem = ndi.binary_erosion(bottom, iterations=1) | bottom
        mask[:zc] = stem[None]
        cord = ndi.binary_erosion(stem, iterations=2)
        wm[:zc] = np.where(cord, 0.95, 0.0)[None]
    gm = np.where(mask, gm, 0.0).astype(np.float32)
    wm = np.where(mask, wm, 0.0).astype(np.float32)
    over = np.maximum(gm + wm, 1.0)  # the two probability maps may sum above one
    gm, wm = gm / over, wm / over
    pw = gm + wm
    # cranial cavity = brain + a thin CSF layer; signed distance to its boundary (the inner table)
    cavity = ndi.binary_dilation(mask, iterations=2)
    sdist = (ndi.distance_transform_edt(~cavity) - ndi.distance_transform_edt(cavity)).astype(np.float32)
    csf = np.where(sdist < -0.5, np.clip(1.0 - gm - wm, 0, 1), 0.0).astype(np.float32)
    # dura: thin sheet under the inner table plus the falx in the interhemispheric fissure
    z_idx = np.arange(shape[0])[:, None, None] + origin_mni[2]
    x_mni = np.arange(shape[2])[None, None, :] + origin_mni[0]
    dura = np.clip(1.0 - np.abs(sdist + 0.75) / 0.75, 0, 1)
    y_mni = np.arange(shape[1])[None, :, None] + origin_mni[1]
    falx = (
        (np.abs(x_mni) < 0.8) & (pw < 0.5) & (sdist < -1) & ((z_idx > 22) | ((np.abs(y_mni + 18) > 45) & (z_idx > 0)))
    )
    dura = np.maximum(dura, falx * 0.8).astype(np.float32)
    csf = np.clip(csf - dura, 0, 1)
    # skull: inner table, diploe, outer table; open at the foramen magnum; scalp outside
    t_in, t_out = 0.25 * skull_mm, 0.25 * skull_mm
    d = sdist
    skull = _band(d, 0.0, skull_mm)
    diploe = _band(d, t_in, skull_mm - t_out)
    bone = np.clip(skull - diploe, 0, 1)
    fat = _band(d, skull_mm, skull_mm + 0.6 * scalp_mm)
    soft = _band(d, skull_mm + 0.6 * scalp_mm, skull_mm + scalp_mm)
    y_mni = np.arange(shape[1])[None, :, None] + origin_mni[1]
    cz = np.argwhere(mask[max(zc - 1, 0)])
    cy, cx = (cz.mean(0) + origin_mni[[1, 0]]) if len(cz) else (-40.0, 0.0)
    hole = (z_idx < foramen_z_mni) & (((y_mni - cy) ** 2 + (x_mni - cx) ** 2) < foramen_radius_mm**2)
    bone, diploe, fat, soft, dura = (np.where(hole, 0.0, a) for a in (bone, diploe, fat, soft, dura))
    canal = hole & (d >= -0.5)  # spinal canal: CSF around the cord, room for descending tonsils
    csf = np.where(canal, np.clip(1.0 - gm - wm, 0, 1), csf).astype(np.float32)
    # below the skull base: a neck of muscle with the footprint of the head at the foramen magnum
    k_fm = int(np.clip(round(foramen_z_mni - origin_mni[2]), 0, shape[0] - 1))
    neck = ndi.binary_fill_holes(d[k_fm] < skull_mm + scalp_mm)
    below = (z_idx < foramen_z_mni) & neck[None] & (d > 0) & ~hole
    for a in (bone, diploe, fat):
        a[below] = 0.0
    soft = np.where(below, 1.0, soft).astype(np.float32)
    vent = _ventricles(csf, mask, sdist, origin_mni)
    parenchyma_dominant = (gm + wm) >= 0.5
    csf_dist = ndi.distance_transform_edt(parenchyma_dominant).astype(np.float32)
    chans = {"csf": csf, "gm": gm, "wm": wm, "dura": dura, "bone": bone, "diploe": diploe, "fat": fat, "soft": soft}
    stack = np.stack([chans[c] for c in CHANNELS])
    total = stack.sum(0)
    stack = np.where(total > 1, stack / np.maximum(total, 1e-6), stack)
    frac = np.round(stack * 255).astype(np.uint8)
    return Anatomy(
        frac=frac,
        vent=vent,
        sdist=sdist,
        csf_dist=csf_dist,
        origin_mni=origin_mni.astype(float),
        skull_mm=skull_mm,
        scalp_mm=scalp_mm,
        foramen_z=float(foramen_z_mni),
    )


def _zyx(img) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(img.dataobj, dtype=np.float32).transpose(2, 1, 0))


def _band(d: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fraction of each 1-mm voxel whose signed distance falls in [lo, hi] (linear partial volume)."""
    return (np.clip(d - lo + 0.5, 0, 1) * np.clip(hi - d + 0.5, 0, 1)).astype(np.float32)


def _ventricles(csf, mask, sdist, origin_mni) -> np.ndarray:
    """Lateral and third ventricles: deep CSF components near the centre of the brain."""
    z = np.arange(csf.shape[0])[:, None, None] + origin_mni[2]
    y = np.arange(csf.shape[1])[None, :, None] + origin_mni[1]
    x = np.arange(csf.shape[2])[None, None, :] + origin_mni[0]
    central = (np.abs(x) < 32) & (y > -50) & (y < 38) & (z > -12) & (z < 36)
    seed = (csf > 0.5) & central & (sdist < -14)
    lab, n = ndi.label(seed)
    if n == 0:
        raise RuntimeError("no ventricle found in the MNI template: anatomy derivation failed")
    sizes = ndi.sum(seed, lab, index=np.arange(1, n + 1))
    keep = np.arange(1, n + 1)[sizes >= 150]
    vent = np.isin(lab, keep)
    # grow into the partial-volume rim and the occipital horns, staying in CSF
    grow = (csf > 0.3) & (np.abs(x) < 36) & (y > -60) & (z > -15) & (z < 40) & (sdist < -8)
    vent = ndi.binary_dilation(vent, mask=grow, iterations=4)
    return vent
