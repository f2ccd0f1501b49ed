"""One renderer per finding kind of ``catalog.CATALOG``.

Each renderer draws its finding on a ``Canvas`` and returns what it did: ``location`` (short phrase),
``center`` (native mm), ``volume_mm3`` and, where meaningful, ``max_thickness_mm``. Sizes are drawn from
per-kind (small, medium, large) tables with +-15 % jitter; the side is the patient's side (native +x = left).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .anatomy import CH, describe
from .lesions import (
    BRAIN_CENTRE,
    CONVEXITY,
    Canvas,
    blob,
    centroid,
    efface_sulci,
    falx_shift,
    inner_table_point,
    inside_cavity,
    jitter_dir,
    normal_at,
    periventricular_rim,
    perilesional_edema,
    pick,
    push,
    side_sign,
    unit,
    ventricle_dilate,
)

# --- helpers ---------------------------------------------------------------------------------------


def _convexity(rng, side: str, choices) -> tuple[str, np.ndarray]:
    name = choices[rng.integers(len(choices))]
    d = np.array(CONVEXITY[name]) * np.array([side_sign(side), 1.0, 1.0])
    return name, jitter_dir(d, rng, 0.12)


def _deep_point(cv: Canvas, rng, side: str, depth: float, lobes=("frontal", "parietal", "temporal")):
    name, d = _convexity(rng, side, lobes)
    return inner_table_point(cv.anat, d, offset_mm=-depth)


def _extra_axial(cv: Canvas, rng, side, thickness, extent, tissue, lens: bool, choices):
    """Crescent (subdural) or lens (epidural) collection under the inner table, with mass effect."""
    s = side_sign(side)
    name, d = _convexity(rng, side, choices)
    c = inner_table_point(cv.anat, d)
    reach = extent * (1.0 if lens else 1.1) + 2.0
    box = cv.anat.box(c - 20.0 * normal_at(cv.anat, c), reach)
    x, y, z = cv.coords(box)
    r2 = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2
    if lens:
        t = thickness * np.sqrt(np.clip(1 - r2 / extent**2, 0, 1))
    else:
        t = thickness * np.clip((np.exp(-r2 / (2 * (extent / 2) ** 2)) - 0.1) / 0.9, 0, 1)
    t = t * (s * x > 2.0) * ~cv.anat.region("posterior_fossa")[box]
    depth = -cv.anat.sdist[box]
    gz, gy, gx = np.gradient(cv.anat.sdist[box])
    inward = [gx, gy, -gz]  # -grad(sdist) in native axes (x and y flip)
    norm = np.sqrt(gx**2 + gy**2 + gz**2) + 1e-6
    fall = t * np.exp(-np.clip(depth, 0, None) / 15.0) * (depth > 0) / norm
    cv.warp(box, tuple(fall * g for g in inward))
    f = np.clip(t - depth + 0.5, 0, 1) * np.clip(depth + 0.5, 0, 1) * (t > 0.3)
    vol = cv.add(tissue, box, f)
    return {
        "location": f"{side} {name} convexity",
        "center": centroid(cv, box, f),
        "volume_mm3": vol,
        "max_thickness_mm": float(t.max()),
    }


# --- hemorrhage ------------------------------------------------------------------------------------


def ich_parenchymal(cv, f, rng):
    s = side_sign(f["side"])
    r = pick(f["size"], (6.5, 12.0, 18.0), rng)
    if rng.random() < 0.5:
        c = np.array([s * rng.uniform(16, 26), rng.uniform(-8, 16), rng.uniform(-2, 10)])
    else:
        c = _deep_point(cv, rng, f["side"], r + rng.uniform(6, 12))
    radii = np.array([r, 1.25 * r, 0.9 * r])
    push(cv, c, r, 0.35 * r, side=s)  # mass effect grows with the clot
    margin = r * rng.uniform(0.3, 0.5) + 3.0  # perihematomal edema grows with the clot too
    box = cv.anat.box(c, radii.max() + margin + 10)
    cavity = inside_cavity(cv, box, 2.0)
    perilesional_edema(cv, box, c, radii, margin, rng)
    clot = blob(cv, box, c, radii, rng, 0.25) * cavity
    vol = cv.add("blood_acute", box, clot)
    return {
        "location": describe(c),
        "center": centroid(cv, box, clot),
        "volume_mm3": vol,
        "max_thickness_mm": 2 * float(radii.max()),
    }


def sdh_acute(cv, f, rng):
    return _extra_axial(
        cv,
        rng,
        f["side"],
        pick(f["size"], (4.0, 8.5, 14.0), rng),
        pick(f["size"], (40.0, 55.0, 65.0), rng, 0.1),
        "blood_acute",
        False,
        ("frontoparietal", "frontal", "parietal", "temporoparietal"),
    )


def sdh_chronic(cv, f, rng):
    return _extra_axial(
        cv,
        rng,
        f["side"],
        pick(f["size"], (5.0, 10.0, 17.0), rng),
        pick(f["size"], (45.0, 58.0, 68.0), rng, 0.1),
        "blood_chronic",
        False,
        ("frontoparietal", "frontal", "parietal"),
    )


def edh(cv, f, rng):
    return _extra_axial(
        cv,
        rng,
        f["side"],
        pick(f["size"], (6.0, 12.0, 20.0), rng),
        pick(f["size"], (20.0, 27.0, 34.0), rng, 0.1),
        "blood_acute",
        True,
        ("temporal", "temporoparietal", "parietal", "frontal"),
    )


def ivh(cv, f, rng):
    nz = np.argwhere(cv.vent)
    lo, hi = nz.min(0), nz.max(0) + 1
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    x, y, z = cv.coords(box)
    h = pick(f["size"], (3.0, 6.0, 10.0), rng)
    sides = [1.0, -1.0] if f.get("side") in (None, "bilateral") else [side_sign(f["side"])]
    fr = np.zeros(cv.vent[box].shape, np.float32)
    for s in sides:
        on = cv.vent[box] & (s * x > 2.0)
        if not on.any():
            continue
        ymax = float(np.broadcast_to(y, on.shape)[on].max())  # most posterior = dependent in a supine head
        fr = np.maximum(fr, on * np.clip(y - (ymax - h) + 0.5, 0, 1) * cv.channel("csf", box))
    vol = cv.add("blood_acute", box, fr)
    where = "bilateral occipital horns" if len(sides) == 2 else f"{f['side']} occipital horn"
    return {"location": where, "center": centroid(cv, box, fr), "volume_mm3": vol, "max_thickness_mm": h}


# --- global / CSF ----------------------------------------------------------------------------------


def ventriculomegaly(cv, f, rng):
    """Hydrocephalus: wide ventricles, closed sulci (unlike atrophy, where both widen) and, when marked,
    transependymal edema along the ventricles."""
    ventricle_dilate(cv, pick(f["size"], (2.5, 4.0, 5.5), rng))
    efface_sulci(cv, pick(f["size"], (0.35, 0.55, 0.75), rng, 0.1))
    periventricular_rim(cv, {"small": 0.0, "medium": 2.5, "large": 4.0}[f["size"]], rng)
    return {
        "location": "lateral and third ventricles",
        "center": BRAIN_CENTRE.copy(),
        "volume_mm3": float(cv.vent.sum()),
    }


def atrophy(cv, f, rng):
    erode(cv, pick(f["size"], (1.2, 2.0, 3.0), rng))
    ventricle_dilate(cv, pick(f["size"], (1.0, 2.0, 3.0), rng))
    return {"location": "diffuse", "center": BRAIN_CENTRE.copy(), "volume_mm3": 0.0}


def erode(cv: Canvas, mm: float) -> None:
    """Widen sulci: parenchyma within ``mm`` of CSF becomes CSF (the ventricles widen too)."""
    if mm <= 0.05:
        return
    box = cv.anat.box(BRAIN_CENTRE + [0, 0, -5], (80, 115, 90))
    dist = cv.sulcal_distance()[box]  # this brain's sulci (moved with its anatomy)
    keep = np.clip(dist - mm, 0.0, 1.0)
    keep = np.where(dist > 0, keep, 1.0)
    cv.replace_base(box, (1.0 - keep) * (cv.parenchyma(box) > 0), "csf")


def midline_shift(cv, f, rng):
    if f["side"] not in ("left", "right"):
        raise ValueError("midline_shift needs side left or right (the direction the midline moves)")
    s = side_sign(f["side"])
    amount = pick(f["size"], (3.5, 7.0, 11.0), rng)
    falx_shift(cv, s, amount)
    c = np.array([s * amount, -5.0, 15.0])
    return {
        "location": "septum pellucidum",
        "center": c,
        "volume_mm3": 0.0,
        "max_thickness_mm": amount,
        "shift_mm": amount,
    }


def chiari(cv, f, rng):
    drop = pick(f["size"], (5.0, 8.0, 12.0), rng)
    c = np.array([0.0, 44.0, cv.anat.foramen_z + 8.0])
    box = cv.anat.box(c + [0, 0, -10], (30, 30, 35))
    x, y, z = cv.coords(box)
    w = np.exp(-(x**2) / (2 * 11.0**2)) * np.exp(-((y - c[1]) ** 2) / (2 * 14.0**2))
    w = w * np.clip((c[2] + 22 - z) / 18.0, 0, 1)
    soft_tissue = (cv.frac[CH["bone"]][box].astype(np.float32) + cv.frac[CH["soft"]][box]) / 255.0
    w = w * np.clip(1.0 - 2 * soft_tissue, 0, 1)
    cv.warp(box, (0.0, 0.0, -drop * w))
    return {"location": "cerebellar tonsils", "center": c - [0, 0, drop], "volume_mm3": 0.0, "max_thickness_mm": drop}


# --- tumours ---------------------------------------------------------------------------------------


def glioma(cv, f, rng):
    s = side_sign(f["side"])
    r = pick(f["size"], (10.0, 17.0, 24.0), rng)
    c = _deep_point(cv, rng, f["side"], r + rng.uniform(5, 10))
    radii = np.array([r, r * rng.uniform(0.8, 1.2), r * rng.uniform(0.8, 1.1)])
    push(cv, c, r, 0.3 * r, side=s)
    margin = r * rng.uniform(0.6, 1.1) + 4.0  # vasogenic edema, often wider than the tumour
    box = cv.anat.box(c, radii.max() + margin + 10)
    cavity = inside_cavity(cv, box, 2.0)
    perilesional_edema(cv, box, c, radii, margin, rng)
    if f["size"] == "large":  # a large hemispheric mass pushes the midline away from itself
        falx_shift(cv, -s, 0.12 * r * rng.uniform(0.8, 1.2))
    tumour = blob(cv, box, c, radii, rng, 0.3) * cavity
    vol = cv.add("tumor_enh", box, tumour)
    cv.add("necrosis", box, blob(cv, box, c, radii * rng.uniform(0.45, 0.65), rng, 0.3) * cavity)
    return {
        "location": describe(c),
        "center": centroid(cv, box, tumour),
        "volume_mm3": vol,
        "max_thickness_mm": 2 * float(radii.max()),
    }


def meningioma(cv, f, rng):
    s = side_sign(f["side"])
    r = pick(f["size"], (8.0, 14.0, 21.0), rng)
    name, d = _convexity(rng, f["side"], ("frontal", "frontoparietal", "parietal", "temporal"))
    d = unit(d * np.array([1.0 if rng.random() < 0.8 else 0.2, 1, 1]))  # some parafalcine
    edge = inner_table_point(cv.anat, d)
    c = edge - 0.6 * r * normal_at(cv.anat, edge)
    push(cv, c, r, 0.45 * r, side=s if abs(c[0]) > r else None)
    margin = r * rng.uniform(0.4, 1.0) if rng.random() < 0.6 else 0.0  # peritumoral edema in about half
    box = cv.anat.box(c, 1.8 * r + margin + 6)
    x, y, z = cv.coords(box)
    perilesional_edema(cv, box, c, np.array([r, r, r]), margin, rng)
    mass = blob(cv, box, c, np.array([r, r, r]), rng, 0.1) * inside_cavity(cv, box, 0.0)
    vol = cv.add("meningioma", box, mass)
    near = np.sqrt((x - edge[0]) ** 2 + (y - edge[1]) ** 2 + (z - edge[2]) ** 2) < 1.8 * r
    cv.add("dura", box, near * np.clip(1.0 - np.abs(cv.anat.sdist[box] + 1.2), 0, 1))  # dural tail
    return {
        "location": f"{f['side']} {name} convexity",
        "center": centroid(cv, box, mass),
        "volume_mm3": vol,
        "max_thickness_mm": 2 * r,
    }


# --- ischaemia -------------------------------------------------------------------------------------


def _cone(cv, rng, side, half_angle_deg, apex_depth=(8.0, 200.0)):
    s = side_sign(side)
    apex = np.array([s * 22.0, -2.0, 4.0])
    axis = jitter_dir([s, rng.uniform(-0.5, 0.5), rng.uniform(0.0, 0.8)], rng, 0.05)
    box = cv.anat.box(apex + axis * 35, (55, 60, 55))
    x, y, z = cv.coords(box)
    d = [x - apex[0], y - apex[1], z - apex[2]]
    rho = np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2) + 1e-3
    cosang = (d[0] * axis[0] + d[1] * axis[1] + d[2] * axis[2]) / rho
    ang = np.degrees(np.arccos(np.clip(cosang, -1, 1)))
    cone = np.clip((half_angle_deg - ang) / 3.0 + 0.5, 0, 1) * (rho > apex_depth[0]) * (rho < apex_depth[1])
    cone = cone * ~cv.anat.region("posterior_fossa")[box] * (s * x > 1.0)
    return box, cone.astype(np.float32)


def stroke_acute(cv, f, rng):
    box, cone = _cone(
        cv,
        rng,
        f["side"],
        pick(f["size"], (13.0, 22.0, 34.0), rng, 0.1),
        (10.0 if f["size"] == "large" else 22.0, 200.0),
    )
    fr = cone * cv.parenchyma(box)
    c = centroid(cv, box, fr)
    # cytotoxic swelling: the territory effaces its own sulci and presses on the ventricle, more when larger
    efface = cone * (cv.anat.sdist[box] < -1.5) * ~cv.vent[box] * cv.channel("csf", box)
    cv.replace_base(box, 0.7 * efface, "gm")
    swell = {"small": 0.0, "medium": 1.5, "large": 3.5}[f["size"]]
    push(cv, c, 0.5 * float(np.cbrt(fr.sum())), swell, side=side_sign(f["side"]))
    fr = cone * cv.parenchyma(box)
    vol = cv.add("infarct", box, fr)
    return {"location": f"{f['side']} MCA territory", "center": c, "volume_mm3": vol}


def encephalomalacia(cv, f, rng):
    box, cone = _cone(cv, rng, f["side"], pick(f["size"], (10.0, 16.0, 24.0), rng, 0.1), (30.0, 200.0))
    par = cv.parenchyma(box)
    cv.add("gliosis", box, ndi.maximum_filter(cone, size=5) * par)
    core = cone * par * np.clip(-cv.anat.sdist[box] / 4.0, 0, 1)
    vol = cv.add("csf", box, core * 0.9)
    ventricle_dilate(cv, 1.5, side=side_sign(f["side"]))
    c = centroid(cv, box, core)
    return {"location": describe(c), "center": c, "volume_mm3": vol}


def svid(cv, f, rng):
    amount = pick(f["size"], (0.15, 0.28, 0.42), rng, 0.1)
    nz = np.argwhere(cv.vent)
    lo, hi = nz.min(0) - 16, nz.max(0) + 17
    box = tuple(slice(int(max(a, 0)), int(min(b, n))) for a, b, n in zip(lo, hi, cv.anat.shape))
    shape = tuple(s.stop - s.start for s in box)
    coarse = rng.standard_normal(tuple(n // 3 + 2 for n in shape)).astype(np.float32)
    field = ndi.zoom(ndi.gaussian_filter(coarse, 1.0), 3, order=1)[: shape[0], : shape[1], : shape[2]]
    field = field / (field.std() + 1e-6)
    dist = ndi.distance_transform_edt(~cv.vent[box]).astype(np.float32)
    pv = np.exp(-dist / 9.0)
    fr = np.clip((0.35 * field + pv - (1.0 - amount)) * 3.0, 0, 1) * cv.channel("wm", box)
    vol = cv.add("wm_lesion", box, fr)
    return {"location": "periventricular and deep white matter", "center": BRAIN_CENTRE.copy(), "volume_mm3": vol}


# --- inflammatory / calcification ------------------------------------------------------------------


def ms_lesions(cv, f, rng):
    n = int(round(pick(f["size"], (4, 9, 16), rng, 0.2)))
    vent_idx = np.argwhere(cv.vent)
    vc = cv.anat.index_to_native @ np.r_[vent_idx.mean(0)[::-1], 1.0]
    total, centres = 0.0, []
    for _ in range(n):
        for _attempt in range(20):
            k = vent_idx[rng.integers(len(vent_idx))]
            p = (cv.anat.index_to_native @ np.r_[k[::-1], 1.0])[:3]
            radial = unit(p - vc[:3] + rng.normal(0, 3, 3))
            p = p + radial * rng.uniform(3.0, 14.0 if rng.random() < 0.75 else 30.0)
            idx = np.round(cv.anat.native_to_index(p)).astype(int)
            if np.all(idx >= 0) and np.all(idx < cv.anat.shape) and cv.frac[CH["wm"]][tuple(idx)] > 150:
                break
        a = rng.uniform(2.5, 6.0)
        axes = np.stack([radial, unit(np.cross(radial, [0, 0, 1.0]) + 1e-3), np.zeros(3)])
        axes[2] = np.cross(axes[0], axes[1])
        box = cv.anat.box(p, a + 3)
        fr = blob(cv, box, p, np.array([a, 0.55 * a, 0.55 * a]), rng, 0.1, axes=axes) * (cv.channel("wm", box) + 0.3)
        total += cv.add("ms_plaque", box, fr)
        centres.append(p)
    return {
        "location": "periventricular and juxtacortical white matter",
        "center": np.mean(centres, 0),
        "volume_mm3": total,
    }


def bg_calcification(cv, f, rng):
    r = pick(f["size"], (2.0, 3.2, 4.5), rng)
    sides = [1.0, -1.0] if f.get("side") in (None, "bilateral") else [side_sign(f["side"])]
    total, cs = 0.0, []
    for s in sides:
        c = np.array([s * 19.0, 4.0, -1.0]) + rng.normal(0, 1.0, 3)
        box = cv.anat.box(c, r * 2 + 3)
        total += cv.add("calcification", box, blob(cv, box, c, np.array([r, 1.4 * r, r]), rng, 0.3))
        cs.append(c)
    where = "bilateral globi pallidi" if len(sides) == 2 else f"{f['side']} globus pallidus"
    return {"location": where, "center": np.mean(cs, 0), "volume_mm3": total}


# --- skull, scalp, postoperative -------------------------------------------------------------------


def _skull_band(cv, box, extra: float = 0.5):
    d = cv.anat.sdist[box]
    return np.clip(d + extra, 0, 1) * np.clip(cv.anat.skull_mm + extra - d, 0, 1)


def skull_fracture_displaced(cv, f, rng):
    r = pick(f["size"], (8.0, 12.0, 16.0), rng)
    dep = pick(f["size"], (3.5, 5.5, 8.0), rng)
    name, d = _convexity(rng, f["side"], ("frontal", "parietal", "temporoparietal", "frontoparietal"))
    edge = inner_table_point(cv.anat, d)
    n = normal_at(cv.anat, edge)
    c = edge + n * cv.anat.skull_mm / 2
    box = cv.anat.box(c, r + dep + 5)
    x, y, z = cv.coords(box)
    dist = np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2)
    disk = np.clip(r - dist + 0.5, 0, 1)
    bone = cv.channel("bone", box) + cv.channel("diploe", box)
    frag = np.clip(bone * np.clip(r - 1.5 - dist + 0.5, 0, 1), 0, 1)
    shift = -n * dep  # native mm, inward
    moved = ndi.shift(frag, (shift[2], -shift[1], -shift[0]), order=1, mode="constant")
    cv.replace_base(box, disk * _skull_band(cv, box, 1.0), "soft")
    vol = cv.add("bone", box, moved)
    return {"location": f"{f['side']} {name} bone", "center": c - n * dep, "volume_mm3": vol, "max_thickness_mm": dep}


def skull_fracture_nondisplaced(cv, f, rng):
    length = pick(f["size"], (25.0, 45.0, 70.0), rng)
    name, d = _convexity(rng, f["side"], ("frontal", "parietal", "temporal", "occipital", "frontoparietal"))
    edge = inner_table_point(cv.anat, d)
    n = normal_at(cv.anat, edge)
    t = unit(np.array([0, 0, 1.0]) - n[2] * n + rng.normal(0, 0.25, 3) * [1, 1, 0])
    t = unit(t - np.dot(t, n) * n)
    m = np.cross(n, t)
    c = edge + n * cv.anat.skull_mm / 2
    box = cv.anat.box(c, length / 2 + 6)
    x, y, z = cv.coords(box)
    d0 = [x - c[0], y - c[1], z - c[2]]
    along = d0[0] * t[0] + d0[1] * t[1] + d0[2] * t[2]
    across = d0[0] * m[0] + d0[1] * m[1] + d0[2] * m[2] + 1.2 * np.sin(along / 5.0 + rng.uniform(0, 6.3))
    line = np.clip(0.8 - np.abs(across) + 0.5, 0, 1) * (np.abs(along) < length / 2)
    line = line * _skull_band(cv, box, 0.5)
    cv.replace_base(box, line, "soft")
    return {"location": f"{f['side']} {name} bone", "center": c, "volume_mm3": float(line.sum()), "length_mm": length}


def craniotomy(cv, f, rng):
    R = pick(f["size"], (18.0, 26.0, 34.0), rng)
    name, d = _convexity(rng, f["side"], ("frontal", "frontoparietal", "temporal", "parietal"))
    edge = inner_table_point(cv.anat, d)
    n = normal_at(cv.anat, edge)
    c = edge + n * cv.anat.skull_mm / 2
    box = cv.anat.box(c, R + 12)
    x, y, z = cv.coords(box)
    dist = np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2)
    kerf = np.clip(1.0 - np.abs(dist - R) + 0.5, 0, 1)
    a = unit(np.cross(n, [0, 0, 1.0]) + 1e-3)
    b = np.cross(n, a)
    holes = np.zeros_like(dist)
    for ang in rng.uniform(0, 2 * np.pi, 3):
        h = c + R * (np.cos(ang) * a + np.sin(ang) * b)
        holes = np.maximum(
            holes, np.clip(5.0 - np.sqrt((x - h[0]) ** 2 + (y - h[1]) ** 2 + (z - h[2]) ** 2) + 0.5, 0, 1)
        )
    cut = np.maximum(kerf, holes) * _skull_band(cv, box, 1.0)
    cv.replace_base(box, cut, "soft")
    sd = cv.anat.sdist[box]
    scalp = (
        (dist < R + 10)
        * np.clip(sd - cv.anat.skull_mm + 0.5, 0, 1)
        * np.clip(cv.anat.skull_mm + cv.anat.scalp_mm + 3 - sd, 0, 1)
    )
    cv.add("soft", box, scalp)
    cv.add("dura", box, (dist < R) * np.clip(1.5 - np.abs(sd + 1.5), 0, 1))
    return {"location": f"{f['side']} {name}", "center": c, "volume_mm3": float(cut.sum()), "max_thickness_mm": 2 * R}


def resection_cavity(cv, f, rng):
    r = pick(f["size"], (9.0, 15.0, 22.0), rng)
    c = _deep_point(cv, rng, f["side"], r + rng.uniform(2, 6))
    radii = np.array([r, r * rng.uniform(0.7, 1.1), r * rng.uniform(0.7, 1.0)])
    box = cv.anat.box(c, radii.max() + 8)
    cavity = inside_cavity(cv, box, 1.0)
    cv.add("gliosis", box, blob(cv, box, c, radii + 2.5, rng, 0.2) * cavity * cv.parenchyma(box))
    hole = blob(cv, box, c, radii, rng, 0.3) * cavity
    vol = cv.add("csf", box, hole)
    return {
        "location": describe(c),
        "center": centroid(cv, box, hole),
        "volume_mm3": vol,
        "max_thickness_mm": 2 * float(radii.max()),
    }


def pneumocephalus(cv, f, rng):
    n = int(round(pick(f["size"], (3, 6, 10), rng, 0.2)))
    total, cs = 0.0, []
    for _ in range(n):
        d = unit([rng.uniform(-0.6, 0.6), -1.0, rng.uniform(0.1, 0.7)])  # non-dependent: anterior
        c = inner_table_point(cv.anat, d, offset_mm=-rng.uniform(1.5, 3.0))
        r = rng.uniform(1.5, 3.0 + SIZE_RADIUS[f["size"]])
        box = cv.anat.box(c, r + 3)
        total += cv.add("gas", box, blob(cv, box, c, np.array([r, r, r]), rng, 0.1) * inside_cavity(cv, box, 0.0))
        cs.append(c)
    if f["size"] == "large":
        box = cv.anat.box(BRAIN_CENTRE + [0, -60, 10], (60, 40, 45))
        x, y, z = cv.coords(box)
        crescent = np.clip(2.5 + cv.anat.sdist[box] + 0.5, 0, 1) * inside_cavity(cv, box, 0.0) * (y < -55) * (z > 0)
        total += cv.add("gas", box, crescent)
    return {"location": "bifrontal extra-axial spaces", "center": np.mean(cs, 0), "volume_mm3": total}


SIZE_RADIUS = {"small": 0.0, "medium": 1.0, "large": 2.5}


def scalp_hematoma(cv, f, rng):
    t = pick(f["size"], (5.0, 8.5, 12.0), rng)
    extent = pick(f["size"], (25.0, 35.0, 45.0), rng)
    name, d = _convexity(rng, f["side"], ("frontal", "parietal", "occipital", "temporoparietal"))
    edge = inner_table_point(cv.anat, d)
    n = normal_at(cv.anat, edge)
    c = edge + n * cv.anat.skull_mm
    box = cv.anat.box(c + n * t / 2, extent + t + 3)
    x, y, z = cv.coords(box)
    r2 = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2
    thick = t * np.sqrt(np.clip(1 - r2 / extent**2, 0, 1))
    o = cv.anat.sdist[box] - cv.anat.skull_mm
    f_blood = np.clip(o + 0.5, 0, 1) * np.clip(thick - o + 0.5, 0, 1) * (thick > 0.5)
    vol = cv.add("blood_acute", box, f_blood)
    cv.add("soft", box, np.clip(1.5 - np.abs(o - thick - 0.75), 0, 1) * (thick > 0.5))  # stretched skin
    return {
        "location": f"{f['side']} {name} scalp",
        "center": centroid(cv, box, f_blood),
        "volume_mm3": vol,
        "max_thickness_mm": t,
    }


RENDERERS = {
    "ich_parenchymal": ich_parenchymal,
    "sdh_acute": sdh_acute,
    "sdh_chronic": sdh_chronic,
    "edh": edh,
    "ivh": ivh,
    "ventriculomegaly": ventriculomegaly,
    "atrophy": atrophy,
    "glioma": glioma,
    "meningioma": meningioma,
    "stroke_acute": stroke_acute,
    "midline_shift": midline_shift,
    "skull_fracture_displaced": skull_fracture_displaced,
    "skull_fracture_nondisplaced": skull_fracture_nondisplaced,
    "craniotomy": craniotomy,
    "resection_cavity": resection_cavity,
    "ms_lesions": ms_lesions,
    "chiari": chiari,
    "pneumocephalus": pneumocephalus,
    "svid": svid,
    "scalp_hematoma": scalp_hematoma,
    "encephalomalacia": encephalomalacia,
    "bg_calcification": bg_calcification,
}
# order of drawing: global deformations, then masses that push tissue, then everything else
STAGE = {
    "atrophy": 0,
    "ventriculomegaly": 0,
    "midline_shift": 1,
    "chiari": 1,
    "sdh_acute": 2,
    "sdh_chronic": 2,
    "edh": 2,
    "ich_parenchymal": 2,
    "glioma": 2,
    "meningioma": 2,
}
