"""Anatomical reference labels for preprocessed volumes of the synthetic health system.

The paper labels tokens with SynthSeg segmentations. Here the ground truth is exact: every synthetic patient is the
template head (``neurovfm.synth.anatomy``) under a known pose, so a preprocessed voxel maps to the template grid by
``template index <- native mm <- scanner LPS <- preprocessed index`` and reads the patient's own tissue maps.

Regions (codes index :data:`REGIONS`): brain tissue (grey + white matter fraction at least
``parenchyma_fraction``) is split by the same coarse geometric boundaries the report generator uses to name lobes
(:func:`neurovfm.synth.anatomy.lobe_of`): frontal, parietal, temporal, occipital, deep grey (basal ganglia, the
stand-in for insula / hippocampus), cerebellum, brainstem; everything else is ``non_brain`` (0).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

REGIONS = ("non_brain", "frontal", "parietal", "temporal", "occipital", "deep_grey", "cerebellum", "brainstem")
LOBE_NAMES = {
    "frontal lobe": 1,
    "parietal lobe": 2,
    "temporal lobe": 3,
    "occipital lobe": 4,
    "basal ganglia": 5,
    "cerebellum": 6,
    "posterior fossa": 7,
}
_ZYX_FROM_XYZ = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)


def lobe_codes(x, y, z) -> np.ndarray:
    """Vectorised :func:`neurovfm.synth.anatomy.lobe_of` (native mm, broadcastable) -> codes 1..7."""
    from neurovfm.synth.anatomy import _fossa

    x, y, z = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float), np.asarray(z, float))
    ax = np.abs(x)
    out = np.full(x.shape, 2, np.int8)  # parietal: what is left
    out[y < -8] = 1  # frontal
    out[(z < 2) & (ax > 28) & (y > -20)] = 3  # temporal
    out[y > 68] = 4  # occipital
    out[(ax > 8) & (ax < 32) & (y > -22) & (y < 12) & (z > -8) & (z < 16)] = 5  # deep grey
    fossa = _fossa(y, z)
    out[fossa] = np.where(ax[fossa] > 8, 6, 7)  # cerebellum / brainstem
    return out


def region_map(anat, frac: np.ndarray, parenchyma_fraction: float) -> np.ndarray:
    """int8 (Z, Y, X) region codes on the template grid for a patient's tissue fractions ``frac`` (C, Z, Y, X)."""
    from neurovfm.synth.anatomy import CH

    x, y, z = anat.axes_native()
    brain = frac[CH["gm"]].astype(np.int16) + frac[CH["wm"]] >= parenchyma_fraction * 255.0
    return np.where(brain, lobe_codes(x, y, z), 0).astype(np.int8)


def tissue_mask(frac: np.ndarray, tissues, fraction: float) -> np.ndarray:
    """bool (Z, Y, X): the summed fractions of ``tissues`` (channel names) reach ``fraction``."""
    from neurovfm.synth.anatomy import CH

    total = np.zeros(frac.shape[1:], np.int16)
    for t in tissues:
        total += frac[CH[t]]
    return total >= fraction * 255.0


def voxel_to_lps(entry: dict, spacing) -> np.ndarray:
    """4 x 4: preprocessed index (slice, row, col) -> scanner LPS mm, from a shard index entry."""
    out = np.eye(4)
    out[:3, :3] = np.asarray(entry["direction_lps"], float) * np.asarray(spacing, float)[None, :]
    out[:3, 3] = np.asarray(entry["origin_lps"], float)
    return out


def volume_to_template(entry: dict, spacing, native_to_lps: np.ndarray, anat) -> np.ndarray:
    """4 x 4: preprocessed index (slice, row, col) -> template array index (z, y, x)."""
    xyz = np.linalg.inv(anat.index_to_native) @ np.linalg.inv(native_to_lps) @ voxel_to_lps(entry, spacing)
    return _ZYX_FROM_XYZ @ xyz


def sample(template: np.ndarray, affine: np.ndarray, shape, order: int = 0) -> np.ndarray:
    """``template`` (Z, Y, X) resampled onto a volume of ``shape`` whose index -> template-index map is
    ``affine``; outside the template: 0."""
    return ndi.affine_transform(
        template,
        affine[:3, :3],
        offset=affine[:3, 3],
        output_shape=tuple(shape),
        order=order,
        mode="constant",
        cval=0,
        prefilter=False,
    )


def token_majority(labels: np.ndarray, patch, n_codes: int = len(REGIONS)) -> np.ndarray:
    """Majority code of each token of a whole-patch volume: int (slices/ps, rows/pr, cols/pc); ties go to the
    lower code."""
    ps, pr, pc = (int(p) for p in patch)
    s, r, c = labels.shape
    blocks = labels.reshape(s // ps, ps, r // pr, pr, c // pc, pc)
    counts = np.stack([(blocks == k).sum(axis=(1, 3, 5)) for k in range(n_codes)])
    return counts.argmax(axis=0)
