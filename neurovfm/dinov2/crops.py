"""Multi-crop of one slice (DINOv2's augmentation, for grey CT / MRI slices).

The slice (uint8 of its CT window or MR scaling) is scaled to [0, 1] and zero-padded to a centred square, as the
slice-wise feature extractor does (:func:`neurovfm.features.public2d.slices.to_images`). Then:

- 2 *global* crops (``global_scale`` of the square's area, resized to ``image_size``) and ``n_local`` *local*
  crops (``local_scale``, resized to ``local_size``): random-resized crops (area fraction uniform in the scale range,
  aspect ratio log-uniform in 3/4..4/3, bilinear antialiased resize), each centred on a random *foreground* pixel
  of the slice (a pixel of a foreground token; the box is shifted to stay inside the square, so it still holds
  that pixel): a crop of air teaches nothing;
- a horizontal flip with ``flip_p``;
- with probability ``jitter.p``, brightness (a factor in 1 +- ``brightness``) and contrast (1 +- ``contrast``
  around the crop's mean) jitter, clipped to [0, 1];
- the grey crop replicated to 3 channels and normalised with ``mean`` / ``std`` (those of the exported encoder's
  preprocessing, so the feature extractor feeds it images on the same scale).

DINOv2's colour jitter of saturation and hue, random greyscale, Gaussian blur and solarisation are left out (grey
images; blur and solarisation as further work).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class CropSpec:
    image_size: int
    local_size: int
    n_local: int
    global_scale: tuple[float, float]
    local_scale: tuple[float, float]
    flip_p: float
    jitter_p: float
    brightness: float
    contrast: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_model(cls, model: dict) -> CropSpec:
        d = model["dino"]
        return cls(
            image_size=int(d["image_size"]),
            local_size=int(d["local_size"]),
            n_local=int(d["n_local"]),
            global_scale=tuple(float(v) for v in d["global_scale"]),
            local_scale=tuple(float(v) for v in d["local_scale"]),
            flip_p=float(d["flip_p"]),
            jitter_p=float(d["jitter"]["p"]),
            brightness=float(d["jitter"]["brightness"]),
            contrast=float(d["jitter"]["contrast"]),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
        )


def padded_square(slice_u8: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
    """uint8 ``[rows, cols]`` -> float ``[side, side]`` in [0, 1], zero-padded centred; and the (top, left) offset."""
    x = torch.from_numpy(np.ascontiguousarray(slice_u8, dtype=np.float32) / np.float32(255.0))
    rows, cols = x.shape
    side = max(rows, cols)
    top, left = (side - rows) // 2, (side - cols) // 2
    return F.pad(x, (left, side - cols - left, top, side - rows - top)), (top, left)


def foreground_pixels(inplane: np.ndarray, patch: tuple[int, int], offset: tuple[int, int]) -> np.ndarray:
    """Pixel (row, col) of the padded square of every pixel of the slice's foreground tokens ``inplane`` ``[ty, tx]``
    bool ``[n, 2]`` (every pixel of the slice when no token is foreground)."""
    py, px = patch
    if inplane.any():
        pix = np.kron(inplane.astype(np.uint8), np.ones((py, px), np.uint8)).astype(bool)
    else:
        pix = np.ones((inplane.shape[0] * py, inplane.shape[1] * px), dtype=bool)
    return np.argwhere(pix) + np.asarray(offset)


def crop_box(side: int, scale, anchor, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random-resized crop of a ``side`` square, holding pixel ``anchor``."""
    area = rng.uniform(*scale) * side * side
    aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    h = int(np.clip(round(math.sqrt(area / aspect)), 1, side))
    w = int(np.clip(round(math.sqrt(area * aspect)), 1, side))
    top = int(np.clip(int(anchor[0]) - h // 2, 0, side - h))
    left = int(np.clip(int(anchor[1]) - w // 2, 0, side - w))
    return top, left, h, w


def one_crop(square: torch.Tensor, box, size: int, spec: CropSpec, rng: np.random.Generator) -> torch.Tensor:
    """The ``box`` of ``square`` resized to ``size``, flipped / jittered, as a normalised ``[3, size, size]``."""
    top, left, h, w = box
    x = square[top : top + h, left : left + w][None, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0, 0]
    if rng.random() < spec.flip_p:
        x = torch.flip(x, dims=[1])
    if rng.random() < spec.jitter_p:
        b = rng.uniform(1 - spec.brightness, 1 + spec.brightness)
        c = rng.uniform(1 - spec.contrast, 1 + spec.contrast)
        x = x * float(b)
        x = ((x - x.mean()) * float(c) + x.mean()).clamp(0.0, 1.0)
    m = torch.tensor(spec.mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(spec.std, dtype=torch.float32).view(3, 1, 1)
    return (x.expand(3, size, size) - m) / s


def multi_crop(
    slice_u8: np.ndarray, inplane: np.ndarray, patch: tuple[int, int], spec: CropSpec, rng: np.random.Generator
) -> dict:
    """{"global": [2, 3, S, S], "local": [n_local, 3, s, s], "boxes": [(top, left, h, w) x (2 + n_local)] in the
    padded square's pixels, "anchors": the foreground pixel each box holds, "side": the square's side}."""
    square, offset = padded_square(slice_u8)
    side = square.shape[0]
    fg = foreground_pixels(inplane, patch, offset)
    crops, boxes, anchors = {"global": [], "local": []}, [], []
    for kind, n, scale, size in (
        ("global", 2, spec.global_scale, spec.image_size),
        ("local", spec.n_local, spec.local_scale, spec.local_size),
    ):
        for _ in range(n):
            anchor = fg[int(rng.integers(len(fg)))]
            box = crop_box(side, scale, anchor, rng)
            crops[kind].append(one_crop(square, box, size, spec, rng))
            boxes.append(box)
            anchors.append(tuple(int(a) for a in anchor))
    empty = torch.zeros(0, 3, spec.local_size, spec.local_size)
    return {
        "global": torch.stack(crops["global"]),
        "local": torch.stack(crops["local"]) if crops["local"] else empty,
        "boxes": boxes,
        "anchors": anchors,
        "side": side,
    }
