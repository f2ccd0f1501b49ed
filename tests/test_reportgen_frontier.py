"""The 2D input builder for frontier models: exclusion, priority selection, slice step and black-slice dropping."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from neurovfm.reportgen.frontier_inputs import (
    build_study,
    candidates,
    encode_slices,
    excluded,
    payload,
    select,
    slices_2d,
)
from reportgen_fixtures import tiny_config


@pytest.fixture
def fr(tmp_path):
    return tiny_config(tmp_path)["reportgen"]["frontier"]


def test_mr_selection_follows_clinical_priority(fr):
    series = [
        {"series_id": s, "modality": "MR", "sequence": s, "series_description": d}
        for s, d in [
            ("t1", "Sag T1"),
            ("t2", "Ax T2"),
            ("flair", "Ax FLAIR"),
            ("dwi", "DWI"),
            ("t1c", "Ax T1 +C"),
            ("swi", "SWI"),
            ("t2x", "Ax T2 phase map"),
        ]
    ]
    chosen = select(candidates(series, fr), 4)
    assert [c["sequence"] for c in chosen] == ["t1c", "dwi", "flair", "swi"]
    assert [c["sequence"] for c in candidates(series, fr)][-2:] == ["t2", "t1"]  # unknown family last
    assert all(c["series_id"] != "t2x" for c in candidates(series, fr))  # phase map excluded
    assert excluded("Scout 3-plane", fr["exclude_patterns"]) and not excluded("Ax T2", fr["exclude_patterns"])


def test_ct_selection_takes_one_of_each_window_first(fr):
    series = [
        {"series_id": f"c{k}", "modality": "CT", "sequence": "ct", "series_description": "Head"} for k in range(2)
    ]
    chosen = select(candidates(series, fr), 4)
    assert [(c["series_id"], c["channel"]) for c in chosen] == [
        ("c0", "brain"),
        ("c0", "blood"),
        ("c0", "bone"),
        ("c1", "brain"),
    ]


def test_slices_every_other_resized_scaled_and_black_dropped(fr):
    vol = np.zeros((10, 64, 48), np.uint8)
    vol[:, 8:56, 8:40] = 200  # a head: 50% of the slice
    vol[4] = 0  # an all-black slice (kept by the slice step, then dropped)
    vol[6, :, :] = 0
    vol[6, :4, :4] = 255  # 16 / 3072 pixels bright: > 90% black, dropped
    vol[8, :, :] = 0
    vol[8, :32, :] = 255  # 50% bright: kept
    out, dropped = slices_2d(vol, fr)
    assert dropped == 2
    assert out.shape == (3, 224, 224)  # slices 0, 2, 8
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0
    assert out[0].max() == pytest.approx(200 / 255, abs=1e-3)


def test_payload_is_an_openai_chat_request_with_png_slices():
    img = np.linspace(0, 1, 224 * 224, dtype=np.float32).reshape(224, 224)
    body = payload("gpt-x", "Indication: fall.", [("t2", encode_slices(np.stack([img, img])))])
    content = body["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "Indication: fall."}
    urls = [c["image_url"]["url"] for c in content if c["type"] == "image_url"]
    assert len(urls) == 2
    png = Image.open(io.BytesIO(base64.b64decode(urls[0].split(",", 1)[1])))
    assert png.size == (224, 224) and png.mode == "L"
    assert json.loads(json.dumps(body)) == body


def test_a_study_shared_across_models_reads_and_encodes_each_series_once(fr):
    """Models with different series limits choose from the same candidates: with one cache per study each (series,
    channel) is read once, and every model's parts and counts equal those built without the cache."""

    class Reader:
        def __init__(self):
            self.reads = 0
            rng = np.random.default_rng(0)
            self.vols = {k: rng.integers(0, 256, (6, 32, 32), dtype=np.uint8) for k in range(2)}

        def position(self, series_id):
            return int(series_id[-1])

        def channel(self, pos, channel):
            self.reads += 1
            return self.vols[pos] // (1 + ["brain", "blood", "bone"].index(channel))

    series = [
        {"series_id": f"s{k}", "modality": "CT", "sequence": "ct_plain", "series_description": "HEAD"} for k in range(2)
    ]
    cached, cache = Reader(), {}
    for max_series in (4, 2, 6):
        fresh = build_study(Reader(), series, fr, max_series)
        assert build_study(cached, series, fr, max_series, cache) == fresh
    assert cached.reads == 6  # two volumes x three windows, each read once over the three models
