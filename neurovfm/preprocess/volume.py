"""One series -> one processed record (stored planes, token mask, foreground moments), or a reason why not.

Storage layout of a record (``planes`` here, byte offsets in :mod:`neurovfm.store.index`):
* MRI: one 8-bit plane, channel ``mri``.
* CT: the configured windows in a fixed order (:func:`ct_window_order`: 8-bit windows first, then 4-bit ones,
  each group by name, whatever the order of the YAML keys); each 8-bit window is a plane of its own, 4-bit
  windows are paired into one plane (first of a pair in the high nibble). With the paper's windows: plane 0 = brain (8 bit),
  plane 1 = blood (high nibble) | bone (low nibble).
Rounding is documented in :mod:`neurovfm.preprocess.quantize`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from neurovfm.preprocess import foreground, quantize, windows
from neurovfm.preprocess.orient import Grid, GeometryError, as_affine, native_spacing, plan_grid
from neurovfm.preprocess.resample import resample

MR_CHANNEL = "mri"


class PreprocessError(ValueError):
    """A series that cannot become a training volume; ``reason`` is a stable ledger code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Channel:
    name: str
    bits: int
    plane: int
    nibble: str | None  # None (8 bit), "high" or "low"
    width: float | None = None  # CT window
    level: float | None = None

    def as_dict(self) -> dict:
        out = {"name": self.name, "bits": self.bits, "plane": self.plane, "nibble": self.nibble}
        if self.width is not None:
            out["window"] = {"width": self.width, "level": self.level}
        return out


def ct_window_order(ct_windows: dict) -> list[str]:
    """The storage order of the CT windows, independent of the order of the YAML keys: 8-bit windows first,
    then 4-bit ones, each group by name (the paper's windows: brain; blood, bone)."""
    return sorted(ct_windows, key=lambda name: (-int(ct_windows[name]["bits"]), name))


def channel_layout(modality: str, pcfg: dict) -> list[Channel]:
    if modality == "MR":
        return [Channel(MR_CHANNEL, 8, 0, None)]
    chans, plane, pending = [], 0, None
    for name in ct_window_order(pcfg["ct_windows"]):
        w = pcfg["ct_windows"][name]
        width, level, bits = float(w["width"]), float(w["level"]), int(w["bits"])
        if bits == 8:
            chans.append(Channel(name, 8, plane, None, width, level))
            plane += 1
        elif pending is None:
            pending = Channel(name, 4, plane, "high", width, level)
            chans.append(pending)
            plane += 1
        else:
            chans.append(Channel(name, 4, pending.plane, "low", width, level))
            pending = None
    return chans


def n_planes(channels: list[Channel]) -> int:
    return 1 + max(c.plane for c in channels)


@dataclass
class Processed:
    planes: list[np.ndarray]  # uint8, grid shape each
    token_mask: np.ndarray  # bool, grid shape / patch
    moments: dict = field(default_factory=dict)  # channel -> [n, sum of levels, sum of squared levels]
    intensity: dict = field(default_factory=dict)  # raw bounds used (MRI percentiles)
    voxel_mask: np.ndarray | None = None  # kept only on request (figures)


def plan(affine, shape, pcfg: dict) -> Grid:
    """Geometry checks and the output grid; raises PreprocessError for absurd or too small volumes."""
    try:
        a = as_affine(affine)
    except GeometryError as err:
        raise PreprocessError("bad_affine", str(err)) from err
    lo, hi = (float(x) for x in pcfg["spacing_range_mm"])
    native = native_spacing(a)
    if not all(lo <= s <= hi for s in native):
        raise PreprocessError(
            "absurd_spacing",
            f"native voxel size (slice, row, col) {tuple(round(s, 4) for s in native)} mm outside [{lo}, {hi}] mm",
        )
    grid = plan_grid(a, tuple(int(s) for s in shape), pcfg["spacing_mm"], pcfg["patch"], pcfg["fit"])
    if max(grid.extent_mm) > float(pcfg["max_extent_mm"]):
        raise PreprocessError(
            "absurd_extent",
            f"extent {tuple(round(e, 1) for e in grid.extent_mm)} mm exceeds {pcfg['max_extent_mm']} mm",
        )
    if any(f < p for f, p in zip(grid.full_shape, pcfg["patch"])):
        raise PreprocessError(
            "smaller_than_patch", f"resampled size {grid.full_shape} is below one patch {tuple(pcfg['patch'])}"
        )
    return grid


def _moments(levels: np.ndarray, mask: np.ndarray) -> list[int]:
    hist = np.bincount(levels[mask], minlength=256).astype(np.int64)
    lv = np.arange(256, dtype=np.int64)
    return [int(hist.sum()), int(hist @ lv), int(hist @ (lv * lv))]


def check_pixels(array: np.ndarray, shape=None) -> None:
    """Raise PreprocessError for a wrong shape, NaN/infinite voxels or a constant image."""
    if shape is not None and tuple(array.shape) != tuple(int(s) for s in shape):
        raise PreprocessError("shape_mismatch", f"pixel array {array.shape} != manifest {tuple(shape)}")
    lo, hi = array.min(), array.max()  # NaN propagates, infinities show as extremes
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = int(array.size - np.isfinite(array).sum())
        raise PreprocessError("non_finite_values", f"{bad} NaN/infinite voxels")
    if lo == hi:
        raise PreprocessError("constant_image", f"every voxel equals {float(array.flat[0]):g}")


def process(
    array: np.ndarray, affine, modality: str, grid: Grid, pcfg: dict, keep_voxel_mask: bool = False, expected_shape=None
) -> Processed:
    """Resample, window, quantise and mask one volume. ``array`` (float32, [k, j, i]) is consumed."""
    if modality not in ("CT", "MR"):
        raise PreprocessError("unknown_modality", f"modality {modality!r}")
    check_pixels(array, expected_shape)
    a = as_affine(affine)
    order, smooth = int(pcfg["interpolation_order"]), bool(pcfg["antialias"])
    channels = channel_layout(modality, pcfg)
    planes = [np.zeros(grid.shape, dtype=np.uint8) for _ in range(n_planes(channels))]
    if modality == "CT":
        hu = resample(array, a, grid, order, cval=float(pcfg["ct_fill_hu"]), smooth=smooth)
        del array
        mask = foreground.ct_foreground(hu, pcfg["ct_foreground_hu"])
        levels = {}
        for ch in channels:
            q = quantize.quantize(windows.ct_window(hu, ch.width, ch.level), ch.bits, inplace=True)
            levels[ch.name] = quantize.dequantize_levels(q, ch.bits)
            if ch.nibble is None:
                planes[ch.plane] = q
            elif ch.nibble == "high":
                planes[ch.plane] = quantize.pack_nibbles(q, None)
            else:
                np.bitwise_or(planes[ch.plane], q, out=planes[ch.plane])
        del hu
        intensity = {}
    else:
        fill = float(array.min())
        lo, hi = windows.percentile_bounds(array, pcfg["mr_percentiles"])
        if not hi > lo:
            raise PreprocessError("constant_image", f"percentile range [{lo:g}, {hi:g}] is empty")
        vals = resample(array, a, grid, order, cval=fill, smooth=smooth)
        del array
        q = quantize.quantize(windows.scale_to_unit(vals, lo, hi), 8, inplace=True)
        del vals
        try:
            mask = foreground.mr_foreground(q)
        except ValueError as err:
            raise PreprocessError("constant_image", f"resampled volume is constant ({err})") from err
        planes[0] = q
        levels = {MR_CHANNEL: q}
        intensity = {"p_lo": lo, "p_hi": hi}
    tokens = foreground.token_mask(mask, pcfg["patch"], float(pcfg["token_foreground_fraction"]))
    if not tokens.any():
        raise PreprocessError("no_foreground", "no token reaches the foreground fraction")
    moments = {name: _moments(lv, mask) for name, lv in levels.items()}
    return Processed(
        planes=planes,
        token_mask=tokens,
        moments=moments,
        intensity=intensity,
        voxel_mask=mask if keep_voxel_mask else None,
    )
