"""2D inputs for frontier (2D-only) models, built from the preprocessed volumes as the paper describes.

Per study: derived / non-diagnostic series are excluded (description patterns); when more series remain
than a model accepts, they are chosen by clinical priority (MRI: ``frontier.mr_priority`` by sequence family;
CT: each volume contributes its windows in ``frontier.ct_windows`` order, volume after volume, so the first
three choices are one brain, one blood and one bone window). Each chosen volume is cut into slices along its
acquisition axis (axis 0 of the store), every ``slice_step``-th slice is kept and resized to size x size
(bilinear, antialiased), values are scaled to [0, 1], and slices with more than ``max_black_fraction`` black
pixels are dropped. Payloads (OpenAI chat format, PNG data URLs, the indication in the text) hold PHI and are
written under the private directory; only counts reach results/.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import torch

from neurovfm.utils.atomic import write_text

from .generate import parse_findings


def excluded(description: str | None, patterns) -> bool:
    text = str(description or "").lower()
    return any(re.search(rf"\b{p.lower()}", text) for p in patterns)


def candidates(series: list[dict], fr: dict) -> list[dict]:
    """Candidate (series, channel) items of one study in priority order. ``series``: rows with series_id,
    modality, sequence, series_description, in acquisition order."""
    out = []
    kept = [s for s in series if not excluded(s.get("series_description"), fr["exclude_patterns"])]
    mr = [s for s in kept if s["modality"] == "MR"]
    prio = {seq: k for k, seq in enumerate(fr["mr_priority"])}
    for s in sorted(mr, key=lambda s: prio.get(s["sequence"], len(prio))):  # stable: acquisition order within
        out.append({**s, "channel": "mri"})
    for s in (s for s in kept if s["modality"] == "CT"):
        out.extend({**s, "channel": w} for w in fr["ct_windows"])
    return out


def select(items: list[dict], max_series: int) -> list[dict]:
    return items[: int(max_series)]


def slices_2d(volume: np.ndarray, fr: dict) -> tuple[np.ndarray, int]:
    """uint8 [Z, H, W] -> (float32 [K, size, size] in [0, 1], number of kept slices dropped as black)."""
    picked = np.asarray(volume[:: int(fr["slice_step"])], dtype=np.float32) / 255.0
    if picked.shape[0] == 0:
        return np.zeros((0, fr["size"], fr["size"]), np.float32), 0
    t = torch.from_numpy(picked)[:, None]
    size = int(fr["size"])
    resized = (
        torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[
            :, 0
        ]
        .clamp_(0.0, 1.0)
        .numpy()
    )
    black = (resized <= float(fr["black_level"])).mean(axis=(1, 2))
    keep = black <= float(fr["max_black_fraction"])
    return resized[keep], int((~keep).sum())


def png_data_url(image: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.round(image * 255.0).astype(np.uint8), mode="L").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def encode_slices(images: np.ndarray) -> tuple[str, ...]:
    """PNG data URLs of float [K, H, W] slices in [0, 1]."""
    return tuple(png_data_url(img) for img in images)


def payload(model: str, prompt: str, parts: list[tuple[str, tuple[str, ...]]]) -> dict:
    """An OpenAI chat request: the prompt, then per part its label and slice count and its images (data URLs,
    :func:`encode_slices`)."""
    content = [{"type": "text", "text": prompt}]
    for label, urls in parts:
        content.append({"type": "text", "text": f"Series: {label} ({len(urls)} slices)"})
        content.extend({"type": "image_url", "image_url": {"url": url}} for url in urls)
    return {"model": model, "messages": [{"role": "user", "content": content}]}


def build_study(
    reader, series: list[dict], fr: dict, max_series: int, cache: dict | None = None
) -> tuple[list[tuple[str, tuple[str, ...]]], list[dict]]:
    """(label, slice data URLs) per chosen series and one count row per chosen series. ``cache``: a dict kept
    across calls (models with different series limits choose from the same candidates), so that each (series,
    channel) is read, resized and encoded once; the payloads do not change."""
    cache = {} if cache is None else cache
    parts, rows = [], []
    for item in select(candidates(series, fr), max_series):
        key = (item["series_id"], item["channel"])
        if key not in cache:
            vol = reader.channel(reader.position(item["series_id"]), item["channel"])
            images, dropped = slices_2d(vol, fr)
            cache[key] = (encode_slices(images), int(vol.shape[0]), dropped)
        urls, n_slices, dropped = cache[key]
        label = f"{item['sequence']}" + ("" if item["channel"] == "mri" else f" {item['channel']} window")
        parts.append((label, urls))
        rows.append(
            {
                "series_id": item["series_id"],
                "sequence": item["sequence"],
                "channel": item["channel"],
                "n_slices": n_slices,
                "kept": len(urls),
                "dropped_black": dropped,
            }
        )
    return parts, rows


def write_payload(path: Path, body: dict) -> None:
    write_text(path, json.dumps(body))


def send_payload(client, body: dict) -> tuple[list[str], str, str | None, str]:
    """Send one payload; (findings, status, error, raw). Accepts a JSON list or {"findings": [...]}."""
    raw = client.chat_messages(body["messages"])
    items, status, error = parse_findings(raw)
    if status != "ok":
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("findings"), list):
            items, status, error = parse_findings(json.dumps(obj["findings"]))
    return items, status, error, raw
