"""``prediction.json``: what one study gets (schema: ``prediction.schema.json`` beside this file), and where the
probe looked for a diagnosis (the peak of its class attention, in patient coordinates, and the side of it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SCHEMA_PATH = Path(__file__).resolve().parent / "prediction.schema.json"
SCHEMA_VERSION = 1


def attention_arrays(entries: list[dict], class_names: list[str]) -> tuple[dict, dict]:
    """The in-memory form of a probe's ``attention.npz`` (:mod:`neurovfm.probes.attention`) for one study, so the
    figure code that reads those files (:func:`neurovfm.plots.attention_overlay.case_panels`) reads it too."""
    data, index = {}, []
    for e in entries:
        key = f"{e['study_id']}/{e['series_id']}/{e['window']}"
        data[f"{key}/attention"] = np.asarray(e["attention"], dtype=np.float32)
        data[f"{key}/coords"] = np.asarray(e["coords"]).astype(int)
        index.append({k: e[k] for k in ("study_id", "series_id", "window", "grid")})
    return {"class_names": list(class_names), "entries": index}, data


def _column(att: np.ndarray, k: int) -> np.ndarray:
    return att[:, k] if att.shape[1] > 1 else att[:, 0]


def token_lps(coords: np.ndarray, volume: dict, patch, spacing_mm) -> np.ndarray:
    """LPS (mm) of the centres of tokens ``coords`` [n, 3] (slice, row, col) of a stored volume (shard index
    entry: ``origin_lps`` is the centre of voxel [0, 0, 0], ``direction_lps`` columns the array axes)."""
    centre_vox = (np.asarray(coords, dtype=float) + 0.5) * np.asarray(patch, dtype=float) - 0.5
    direction = np.asarray(volume["direction_lps"], dtype=float)
    return np.asarray(volume["origin_lps"], dtype=float) + (centre_vox * np.asarray(spacing_mm, float)) @ direction.T


def side_of(peak_x: float, centre_x: float, tolerance_mm: float) -> str:
    """``left`` / ``right`` / ``midline``: LPS x grows towards the patient's left."""
    d = peak_x - centre_x
    return "midline" if abs(d) <= tolerance_mm else ("left" if d > 0 else "right")


def attention_peak(index: dict, data: dict, k: int, shard_index: dict, study_id: str) -> dict | None:
    """Where class ``k``'s attention peaks: the entry (volume x window) holding most of it, its top token, that
    token's LPS centre and side relative to the centre of the volume's foreground tokens (within half a token's
    in-plane width: ``midline``)."""
    best = None
    for e in index["entries"]:
        if e["study_id"] != study_id:
            continue
        key = f"{e['study_id']}/{e['series_id']}/{e['window']}"
        col = _column(data[f"{key}/attention"], k)
        if best is None or col.sum() > best[0]:
            best = (float(col.sum()), e, col, data[f"{key}/coords"])
    if best is None:
        return None
    mass, e, col, coords = best
    vol = next(v for v in shard_index["volumes"] if v["series_id"] == e["series_id"])
    patch, spacing = shard_index["patch"], shard_index["spacing_mm"]
    lps = token_lps(coords, vol, patch, spacing)
    top = int(np.argmax(col))
    half_token = 0.5 * float(patch[2]) * float(spacing[2])
    return {
        "series_id": e["series_id"],
        "window": e["window"],
        "attention_mass": round(mass, 6),
        "token": [int(v) for v in coords[top]],
        "peak_lps_mm": [round(float(v), 2) for v in lps[top]],
        "side": side_of(float(lps[top, 0]), float(lps[:, 0].mean()), half_token),
    }


def diagnoses(probe: dict, modality: str) -> list[dict]:
    """One row per class of the study's probe, in ontology order."""
    from neurovfm.labels.ontology import load_ontology

    onto = load_ontology(modality)
    out = []
    for j, name in enumerate(probe["names"]):
        thr = float(probe["thresholds"][j])
        out.append(
            {
                "name": name,
                "category": onto[name].category,
                "urgent_by_type": bool(onto[name].urgent),
                "probability": float(probe["prob"][j]),
                "calibrated_probability": float(probe["calibrated"][j]),
                "calibrated": bool(probe["calibrated_fitted"][j]),
                "threshold": None if np.isnan(thr) else thr,
                "positive": bool(probe["decision"][j]),
            }
        )
    return out


def top_positive(rows: list[dict], n: int) -> list[int]:
    """Positions of the positive classes with the highest calibrated probability (then raw), at most ``n``."""
    pos = [i for i, r in enumerate(rows) if r["positive"]]
    return sorted(pos, key=lambda i: (-rows[i]["calibrated_probability"], -rows[i]["probability"]))[:n]


def validate_record(record: dict) -> None:
    """jsonschema validation against the committed schema (raises ``jsonschema.ValidationError``)."""
    import jsonschema

    jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text())).validate(record)
