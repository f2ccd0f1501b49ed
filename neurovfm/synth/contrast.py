"""Tissue appearance per modality/sequence and the scanner's imperfections (noise, bias field, scaling).

CT values are Hounsfield units. MR values are relative signal on an arbitrary positive scale (roughly
1.5 T spin-echo-like contrast); the scanner's gain multiplies them. Every tissue a phantom can contain
(base channels of ``anatomy.CHANNELS`` and lesion tissues) must have a value for every sequence.
"""

from __future__ import annotations

import numpy as np

SEQUENCES = {"CT": ("ct", "ct_contrast"), "MR": ("t1", "t2", "flair", "dwi", "t1c")}

#            ct     ct_c   t1    t1c   t2    flair  dwi
_TABLE = {
    "air": (-1000, -1000, 0, 0, 0, 0, 0),
    "csf": (6, 6, 250, 250, 1800, 120, 90),
    "gm": (40, 43, 600, 620, 950, 900, 650),
    "wm": (28, 30, 820, 830, 650, 700, 540),
    "dura": (45, 80, 480, 950, 300, 350, 200),
    "bone": (1500, 1500, 40, 40, 40, 40, 20),
    "diploe": (600, 600, 700, 720, 520, 520, 150),
    "fat": (-100, -100, 1100, 1100, 750, 850, 120),
    "soft": (42, 55, 500, 560, 420, 420, 250),
    "blood_acute": (72, 74, 560, 570, 380, 700, 420),
    "blood_chronic": (18, 20, 420, 440, 1450, 1250, 320),
    "edema": (18, 19, 480, 490, 1350, 1400, 520),
    "tumor_enh": (36, 85, 520, 1250, 1150, 1200, 720),
    "necrosis": (12, 12, 300, 300, 1650, 450, 200),
    "meningioma": (48, 95, 580, 1300, 950, 950, 700),
    "infarct": (23, 24, 560, 570, 1100, 1050, 1650),
    "gliosis": (16, 16, 360, 360, 1500, 1350, 250),
    "ms_plaque": (24, 25, 470, 520, 1300, 1550, 640),
    "wm_lesion": (20, 20, 650, 650, 1200, 1350, 560),
    "calcification": (380, 380, 900, 900, 180, 200, 100),
    "gas": (-1000, -1000, 0, 0, 0, 0, 0),
}
_COLS = ("ct", "ct_contrast", "t1", "t1c", "t2", "flair", "dwi")
TISSUES = tuple(_TABLE)

# field-strength tweaks to relative contrast: 3 T shortens the T1 grey/white gap a little, lifts DWI SNR
_FIELD = {3.0: {("t1", "gm"): 1.06, ("t1c", "gm"): 1.06, ("flair", "gm"): 1.04}}


def tissue_value(tissue: str, sequence: str, field_strength: float | None = None) -> float:
    if tissue not in _TABLE:
        raise KeyError(f"no appearance defined for tissue {tissue!r}")
    if sequence not in _COLS:
        raise ValueError(f"unknown sequence {sequence!r}; expected one of {_COLS}")
    v = float(_TABLE[tissue][_COLS.index(sequence)])
    if field_strength is not None and field_strength >= 2.0:
        v *= _FIELD[3.0].get((sequence, tissue), 1.0)
    return v


def check_sequence(modality: str, sequence: str) -> None:
    if modality not in SEQUENCES:
        raise ValueError(f"unknown modality {modality!r}; expected CT or MR")
    if sequence not in SEQUENCES[modality]:
        raise ValueError(f"sequence {sequence!r} is not a {modality} sequence; expected one of {SEQUENCES[modality]}")


def ct_finish(hu: np.ndarray, rng: np.random.Generator, noise_hu: float = 5.0) -> np.ndarray:
    """Add quantum noise and clip to the 12-bit CT range."""
    hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(noise_hu)
    return np.clip(hu, -1024.0, 3071.0, out=hu)


def bias_field(
    shape, voxel_to_lps: np.ndarray, centre_lps, rng: np.random.Generator, strength: float = 0.2
) -> np.ndarray:
    """Smooth multiplicative field exp(linear + quadratic terms of scanner position), ~ +-strength."""
    k, j, i = (np.arange(n, dtype=np.float32) for n in shape)
    a = voxel_to_lps.astype(np.float32)
    c = np.asarray(centre_lps, dtype=np.float32)
    pos = [
        a[r, 0] * i[None, None, :] + a[r, 1] * j[None, :, None] + a[r, 2] * k[:, None, None] + (a[r, 3] - c[r])
        for r in range(3)
    ]
    lin = rng.normal(0.0, strength, 3) / 100.0
    quad = rng.normal(0.0, strength, 3) / 100.0**2
    log_b = sum(lin[r] * pos[r] + quad[r] * pos[r] ** 2 for r in range(3))
    return np.exp(np.clip(log_b, -1.0, 1.0)).astype(np.float32)


def mr_finish(signal: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Rician magnitude noise: |signal + complex Gaussian noise|."""
    re = signal + rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(sigma)
    im = rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(sigma)
    return np.sqrt(re * re + im * im, dtype=np.float32)
