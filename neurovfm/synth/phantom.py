"""Synthetic patients and the scanner that images them.

``build_person`` draws what stays the same across a patient's studies (head size, the brain's own anatomy);
``build_patient`` turns (person, age, findings) into one study's patient: placed in the scanner, aged, plus one
drawing per finding. ``render`` images it for one ``Acquisition``: it builds
the sequence's intensity volume on the 1-mm native grid once (cached on the patient), then resamples it
with a single trilinear pass through acquisition voxel -> LPS -> native pose -> template index, averaging
a few samples across the slice thickness, and adds the scanner's noise (and, for MR, bias field and gain).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .anatomy import CHANNELS, load_anatomy
from .catalog import CATALOG
from .contrast import bias_field, check_sequence, ct_finish, mr_finish, tissue_value
from .geometry import Acquisition, _rotation
from .lesions import Canvas, vary_anatomy, ventricle_dilate
from .lesions_kinds import RENDERERS, STAGE, erode
from .resample import render_grid

SIZES = ("small", "medium", "large")


@dataclass(eq=False)
class Patient:
    age: float
    sex: str
    findings: list
    head_center_lps: tuple
    head_extent_mm: tuple
    native_to_lps: np.ndarray  # 4x4 pose: native (template LPS) mm -> scanner LPS mm
    frac: np.ndarray  # uint8 (C, Z, Y, X) base tissue fractions of this patient
    layers: list
    _cache: dict = field(default_factory=dict, repr=False)

    def lps_to_native(self, p) -> np.ndarray:
        return (np.linalg.inv(self.native_to_lps) @ np.r_[np.asarray(p, float), 1.0])[:3]

    def to_lps(self, p) -> np.ndarray:
        return (self.native_to_lps @ np.r_[np.asarray(p, float), 1.0])[:3]

    def clear_cache(self) -> None:
        """Drop the cached per-sequence volumes (about 35 MB each)."""
        self._cache.clear()


def _validate(findings) -> list[dict]:
    out = []
    for n, f in enumerate(findings):
        if not isinstance(f, dict) or "kind" not in f:
            raise ValueError(f"finding #{n} must be a dict with a 'kind': {f!r}")
        if f["kind"] not in CATALOG:
            raise ValueError(f"finding #{n}: unknown kind {f['kind']!r}; expected one of {sorted(CATALOG)}")
        g = dict(f)
        g.setdefault("size", "medium")
        if g["size"] not in SIZES:
            raise ValueError(f"finding #{n} ({g['kind']}): size {g['size']!r} not in {SIZES}")
        if g.get("side") not in (None, "left", "right", "bilateral"):
            raise ValueError(f"finding #{n} ({g['kind']}): side {g['side']!r} not left/right/bilateral/None")
        out.append(g)
    return out


def draw_head_size(rng: np.random.Generator, sex: str, scale_range: tuple = (0.9, 1.1)) -> np.ndarray:
    """A person's head size: per-axis scale of the template (a global size by sex, then a small jitter per axis);
    the first draws of a person's stream."""
    lo, hi = scale_range
    g = rng.uniform(lo + 0.03, hi - 0.03) * (1.02 if str(sex).upper().startswith("M") else 0.98)
    return np.clip(g * rng.uniform(0.97, 1.03, 3), lo, hi)


def draw_placement(
    rng: np.random.Generator, scale: np.ndarray, pose_deg: float = 8.0, shift_mm: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """The head's placement in the scanner for one study, the first draws of a study's stream: a small rotation
    and a translation. Returns (native mm -> scanner LPS 4 x 4, head centre LPS [3])."""
    rot = _rotation(tuple(rng.uniform(-pose_deg, pose_deg, 3)))
    centre_lps = rng.uniform(-shift_mm, shift_mm, 3)
    c_native = np.array([0.0, 18.0, 10.0])
    pose = np.eye(4)
    pose[:3, :3] = rot @ np.diag(scale)
    pose[:3, 3] = centre_lps - pose[:3, :3] @ c_native
    return pose, centre_lps


@dataclass(eq=False)
class Person:
    """What stays the same across one patient's studies: the head size and the brain's own anatomy."""

    scale: np.ndarray  # per-axis head scale [3]
    frac: np.ndarray  # uint8 (C, Z, Y, X) tissue fractions after the anatomy variation (before ageing)
    vent: np.ndarray  # bool (Z, Y, X) ventricles
    csf_dist: np.ndarray | None  # float32 (Z, Y, X) its sulcal distances (None: the template's, no variation)


def build_person(
    rng: np.random.Generator, sex: str, scale_range: tuple = (0.9, 1.1), variation_mm: float = 0.0
) -> Person:
    """A person: head size (:func:`draw_head_size`, the first draws of ``rng``), then with ``variation_mm`` > 0 an
    anatomy of their own (``lesions.vary_anatomy``: a smooth displacement of the brain inside the skull and
    ventricle asymmetry). A patient's studies image the same person at different ages, poses and findings."""
    anat = load_anatomy()
    scale = draw_head_size(rng, sex, scale_range)
    cv = Canvas(anat, anat.frac.copy(), anat.vent.copy())
    vary_anatomy(cv, rng, variation_mm)
    return Person(scale=scale, frac=cv.frac, vent=cv.vent, csf_dist=cv.csf_dist)


def build_patient(
    rng: np.random.Generator,
    age: float,
    sex: str,
    findings: list[dict],
    pose_deg: float = 8.0,
    shift_mm: float = 10.0,
    scale_range: tuple = (0.9, 1.1),
    age_atrophy_mm: float = 1.2,
    variation_mm: float = 0.0,
    person: Person | None = None,
) -> Patient:
    """One study's patient: ``person`` (head size and anatomy; None: a new one with ``scale_range`` and
    ``variation_mm``, drawn from a stream spawned off ``rng``) placed in the scanner (:func:`draw_placement`), aged (atrophy and
    ventricle size by ``age``), with the requested findings drawn in. Lateralised findings given without a side
    get a random one; ``bilateral`` draws both sides.
    """
    findings = _validate(findings)
    anat = load_anatomy()
    if person is None:  # from a stream spawned off rng: the study's own draws are the same whatever the person
        person = build_person(rng.spawn(1)[0], sex, scale_range, variation_mm)
    pose, centre_lps = draw_placement(rng, person.scale, pose_deg, shift_mm)
    scale = person.scale
    dist = None if person.csf_dist is None else person.csf_dist.copy()
    cv = Canvas(anat, person.frac.copy(), person.vent.copy(), csf_dist=dist)
    # ageing and normal variation of the ventricles
    a = float(np.clip((age - 45.0) / 45.0, 0.0, 1.0))
    erode(cv, age_atrophy_mm * a * rng.uniform(0.6, 1.2))
    ventricle_dilate(cv, max(0.0, 2.0 * a + rng.normal(0.0, 0.6)))
    enriched = [None] * len(findings)
    order = sorted(range(len(findings)), key=lambda n: STAGE.get(findings[n]["kind"], 3))
    for n in order:
        enriched[n] = _draw(cv, findings[n], rng, pose, scale)
    extent = np.array([170.0, 200.0, 180.0]) * scale
    return Patient(
        age=float(age),
        sex=str(sex),
        findings=enriched,
        head_center_lps=tuple(map(float, centre_lps)),
        head_extent_mm=tuple(map(float, extent)),
        native_to_lps=pose,
        frac=cv.frac,
        layers=cv.layers,
    )


def _draw(cv: Canvas, f: dict, rng, pose, scale) -> dict:
    kind = CATALOG[f["kind"]]
    side = f.get("side")
    if kind.lateralised and side is None:
        side = "left" if rng.random() < 0.5 else "right"
    sides = ["left", "right"] if (kind.lateralised and side == "bilateral") else [side]
    if f["kind"] == "midline_shift" and len(sides) == 2:
        raise ValueError("midline_shift cannot be bilateral: side is the direction the midline moves")
    parts = [RENDERERS[f["kind"]](cv, dict(f, side=s), rng) for s in sides]
    out = dict(f, side=side)
    loc = parts[0]["location"]
    if len(parts) == 2:
        loc = "bilateral " + loc.split(" ", 1)[1] if loc.startswith(("left ", "right ")) else loc
    centre = np.mean([p["center"] for p in parts], axis=0)
    out["location"] = loc
    out["center_lps"] = [round(float(v), 1) for v in (pose @ np.r_[centre, 1.0])[:3]]
    out["volume_ml"] = round(sum(p["volume_mm3"] for p in parts) * float(np.prod(scale)) / 1000.0, 2)
    for key in ("max_thickness_mm", "shift_mm", "length_mm"):
        vals = [p[key] for p in parts if key in p]
        if vals:
            out[key] = round(float(max(vals)) * float(np.mean(scale)), 1)
    return out


SLAB = 4  # native z-planes per block of the tissue-map sum in _volume (about 1 MB of float32)


def _weighted_maps(frac: np.ndarray, weights: list) -> np.ndarray:
    """``sum_c weights[c] * frac[c]`` in float32, slab by slab so that the partial sums stay in cache (twice as fast
    as whole-volume passes; the same float32 operations in the same order, so the same values)."""
    vol = np.empty(frac.shape[1:], np.float32)
    tmp = np.empty((SLAB,) + vol.shape[1:], np.float32)
    for z in range(0, vol.shape[0], SLAB):
        acc, t = vol[z : z + SLAB], tmp[: min(SLAB, vol.shape[0] - z)]
        np.multiply(frac[0, z : z + SLAB], weights[0], out=acc, dtype=np.float32)
        for c in range(1, len(weights)):
            np.multiply(frac[c, z : z + SLAB], weights[c], out=t, dtype=np.float32)
            acc += t
    return vol


def _volume(patient: Patient, sequence: str, field_strength: float | None) -> tuple[np.ndarray, float]:
    """Intensity volume of one sequence on the native grid, minus the air value (so air = 0)."""
    key = (sequence, field_strength)
    if key not in patient._cache:
        air = tissue_value("air", sequence)
        weights = [np.float32((tissue_value(name, sequence, field_strength) - air) / 255.0) for name in CHANNELS]
        vol = _weighted_maps(patient.frac, weights)
        for layer in patient.layers:
            sub = vol[layer.box]
            v = np.float32(tissue_value(layer.tissue, sequence, field_strength) - air)
            sub += layer.frac * (v - sub)
        patient._cache[key] = (vol, air)
    return patient._cache[key]


def render(
    patient: Patient,
    modality: str,
    sequence: str,
    acq: Acquisition,
    rng: np.random.Generator,
    scanner: dict | None = None,
    sub_mm: float = 1.5,
    max_sub: int = 3,
) -> np.ndarray:
    """Image the patient: float32 HU for CT, non-negative signal for MR, shape (slices, rows, cols).

    ``scanner`` keys (all optional): field_strength (T, MR contrast and noise), scale (MR gain),
    noise (MR noise sd as a fraction of white matter signal), bias (MR bias-field strength),
    noise_hu (CT noise sd). Each slice averages ``ceil(thickness / sub_mm)`` (<= max_sub) samples.
    """
    check_sequence(modality, sequence)
    scanner = scanner or {}
    fs = scanner.get("field_strength")
    fs = float(fs) if fs is not None and modality == "MR" else None
    vol, air = _volume(patient, sequence, fs)
    anat = load_anatomy()
    a = patient.native_to_lps @ anat.index_to_native  # (kx, ky, kz) -> LPS
    m = np.linalg.inv(a) @ acq.voxel_to_lps()  # (i, j, k) -> (kx, ky, kz)
    n_sub = int(np.clip(np.ceil(acq.slice_thickness / sub_mm - 1e-6), 1, max_sub))
    offs = (np.arange(n_sub) + 0.5) / n_sub - 0.5
    step = (np.linalg.inv(a)[:3, :3] @ acq.slice_normal) * acq.slice_thickness
    dims = np.array(vol.shape[::-1], dtype=np.float64)  # x, y, z sizes
    coef = np.empty((n_sub, 3, 4), np.float32)  # per sample and axis (x, y, z): the grid's affine in float32
    for s, o in enumerate(offs):
        for r in range(3):
            sc = 2.0 / (dims[r] - 1)
            coef[s, r] = (m[r, 0] * sc, m[r, 1] * sc, m[r, 2] * sc, (m[r, 3] + step[r] * o) * sc - 1.0)
    img = np.empty((acq.n_slices, acq.rows, acq.cols), np.float32)
    render_grid(vol, coef, acq.n_slices, acq.rows, acq.cols, img)  # grid_sample's values, bit for bit
    img += np.float32(air)
    if modality == "CT":
        return ct_finish(img, rng, float(scanner.get("noise_hu", 5.0)))
    gain = float(scanner.get("scale", 1.0))
    field_s = float(scanner.get("bias", 0.2))
    noise = float(scanner.get("noise", 0.018 if (fs or 1.5) >= 2.0 else 0.028))
    if field_s > 0:
        img *= bias_field(img.shape, acq.voxel_to_lps(), patient.head_center_lps, rng, field_s)
    img *= np.float32(gain)
    sigma = noise * tissue_value("wm", sequence, fs) * gain
    return mr_finish(img, rng, sigma)
