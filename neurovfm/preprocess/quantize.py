"""Quantisation of [0, 1] values and the 4-bit packing.

Rounding (exact, deterministic): ``q = floor(v * (2**bits - 1) + 0.5)``, i.e. round half up, so
8 bits give 0..255 and 4 bits 0..15. Two 4-bit values share one byte: ``(high << 4) | low``.
A 4-bit level is read back on the 8-bit scale as ``q4 * 17`` (0 -> 0, 15 -> 255), so every stored
channel divides by 255 to [0, 1] the same way; 4-bit values are then exact multiples of 1/15.
"""

from __future__ import annotations

import numpy as np

NIBBLE_TO_BYTE = 17  # 255 / 15


def quantize(v: np.ndarray, bits: int, inplace: bool = False) -> np.ndarray:
    """Levels of ``v`` (values in [0, 1]); with ``inplace`` the float buffer ``v`` is reused as scratch."""
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, not {bits}")
    work = v if inplace else v.astype(np.float32, copy=True)
    np.multiply(work, np.float32((1 << bits) - 1), out=work)
    np.add(work, np.float32(0.5), out=work)
    return work.astype(np.uint8)  # truncation == floor for the non-negative values here


def pack_nibbles(high: np.ndarray, low: np.ndarray | None) -> np.ndarray:
    """One byte per voxel from two 4-bit arrays (values 0..15); ``low`` may be absent (zero)."""
    if high.max(initial=0) > 15 or (low is not None and low.max(initial=0) > 15):
        raise ValueError("4-bit values must lie in 0..15")
    out = np.left_shift(high, 4, dtype=np.uint8)
    if low is not None:
        np.bitwise_or(out, low, out=out)
    return out


def unpack_nibble(packed: np.ndarray, high: bool, scale_to_byte: bool = True) -> np.ndarray:
    """The high or low 4-bit value of each byte, on the 8-bit scale (x17) unless ``scale_to_byte`` is off."""
    vals = np.right_shift(packed, 4) if high else np.bitwise_and(packed, 0x0F)
    if scale_to_byte:
        np.multiply(vals, NIBBLE_TO_BYTE, out=vals)
    return vals


def dequantize_levels(q: np.ndarray, bits: int) -> np.ndarray:
    """Stored levels -> the 8-bit scale the reader returns."""
    return q if bits == 8 else (q * NIBBLE_TO_BYTE).astype(np.uint8)
