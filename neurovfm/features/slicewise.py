"""Public 2D encoders applied slice-wise, as the paper compares NeuroVFM with them: every stored volume cut into 2D
slices along its slice (acquisition) axis, each CT window a separate image, each slice encoded by the frozen 2D
encoder (:mod:`neurovfm.features.public2d`) into one embedding, written to the same feature store as the 3D
encoders (:mod:`neurovfm.features.store`).

One slice = one token: an entry (a volume in one window) holds ``n_tokens`` = its encoded slices, their embeddings
as ``features`` and ``(slice index, 0, 0)`` as ``coords``; its ``grid`` is ``[slices, 1, 1]``. A study's bag is then
every encoded slice of every volume and window of the study, and the existing study-level probes aggregate it
unchanged: the attentive probe attends over the slices, the pooled check (:mod:`neurovfm.probes.pooled_cv`) takes
the mean and tails over them.

Chunks, resumption and the sharded jobs work as in :mod:`neurovfm.features.extract` (whole studies per chunk, a
chunk per input shard at most, a fingerprint per chunk; :func:`merge` writes the index from the shard jobs' parts);
a chunk's size counts slice images as planned from the index (before the foreground selection).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch

from neurovfm.features import store
from neurovfm.features.extract import _chunk_shard, autocast, finish_extraction, merge_split, plan_chunks
from neurovfm.features.public2d.slices import slice_indices, to_images
from neurovfm.store.reader import ShardReader
from neurovfm.utils.progress import Progress

log = logging.getLogger("neurovfm")
TOKEN = "slice"


def slicing(spec: dict) -> dict:
    """The slice selection settings of an ``encoders`` section (recorded in the index and the fingerprints)."""
    return {
        "axis": "slice (native acquisition axis)",
        "stride": int(spec["slice_stride"]),
        "max_slices": None if spec["max_slices"] is None else int(spec["max_slices"]),
        "foreground_only": bool(spec["foreground_only"]),
    }


def selected(reader: ShardReader, i: int, sl: dict) -> np.ndarray:
    """Encoded slice indices of volume ``i`` under the slicing settings ``sl``."""
    v = reader.volumes[i]
    mask = np.asarray(reader.token_mask(i)) if sl["foreground_only"] else None
    slab = int(reader.index["patch"][0])
    return slice_indices(int(v["shape"][0]), mask, slab, sl["stride"], sl["max_slices"])


def planned_images(reader: ShardReader, i: int, sl: dict) -> int:
    """Slice images of volume ``i`` at most (every ``stride``-th slice, capped; windows counted), from the index
    alone: every shard job and the merge plan the split's chunks without reading its token masks."""
    n = -(-int(reader.volumes[i]["shape"][0]) // sl["stride"])
    return (n if sl["max_slices"] is None else min(n, sl["max_slices"])) * len(reader.channels(i))


def plan(reader: ShardReader, header: dict) -> list[list[int]]:
    """Chunks of whole studies, a chunk's size counted in slice images (:func:`planned_images`)."""
    sl = header["slices"]
    return plan_chunks(reader, int(header["chunk_tokens"]), cost=lambda i: planned_images(reader, i, sl))


def fingerprint(split: str, header: dict, reader: ShardReader, members: list[int]) -> str:
    key = {
        "format": store.FORMAT,
        "version": store.VERSION,
        "token": TOKEN,
        "split": split,
        "weights": header["weights_sha256"],
        "slices": header["slices"],
        "preprocessing": header["preprocessing"],
        "dtype": np.dtype(store.DTYPE).name,
        "volumes": [
            [reader.volumes[i][k] for k in ("series_id", "shard", "offset", "nbytes")]
            + [reader.volumes[i]["mask"]["n_foreground"]]
            for i in members
        ],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def volume_items(reader: ShardReader, i: int, sl: dict, pre) -> list[dict]:
    """One item per window of volume ``i``: ``meta`` (index entry fields), ``slices`` (indices) and ``images``."""
    v = reader.volumes[i]
    idx = selected(reader, i, sl)
    out = []
    for name in reader.channels(i):
        data = np.asarray(reader.channel(i, name))[idx]
        out.append(
            {
                "meta": {
                    "series_id": v["series_id"],
                    "study_id": v["study_id"],
                    "modality": v["modality"],
                    "sequence": v.get("sequence"),
                    "window": name,
                    "grid": [int(v["shape"][0]), 1, 1],
                },
                "slices": idx,
                "images": to_images(data, pre.image_size, pre.mean, pre.std),
            }
        )
    return out


@torch.no_grad()
def encode_items(encoder, items, batch_size: int, device: torch.device, precision: str = "auto"):
    """Yield ``(item, embeddings fp32 [n_slices, D])`` in input order; images of consecutive items share batches of
    ``batch_size``."""
    pack, n = [], 0

    def flush():
        images = torch.cat([it["images"] for it in pack])
        outs = []
        for k in range(0, images.shape[0], batch_size):
            with autocast(device, precision):
                outs.append(encoder(images[k : k + batch_size].to(device)).float().cpu())
        feats = torch.cat(outs) if outs else torch.zeros(0, encoder.embed_dim)
        return list(zip(pack, feats.split([it["images"].shape[0] for it in pack])))

    for it in items:
        pack.append(it)
        n += it["images"].shape[0]
        if n >= batch_size:
            yield from flush()
            pack, n = [], 0
    if pack:
        yield from flush()


def extract_split(
    encoder,
    split: str,
    index_path,
    out_dir,
    header: dict,
    device: torch.device,
    batch_size: int,
    precision: str,
    progress_every_s: float,
    shard: int | None = None,
) -> dict:
    """One split into ``out_dir`` (finished chunks reused); ``shard``: only that input shard's chunks and a part
    record instead of the index (see :func:`neurovfm.features.extract.extract_split`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / store.INDEX_NAME).unlink(missing_ok=True)
    reader = ShardReader(index_path)
    header = {**header, "split": split}
    chunks = plan(reader, header)
    if shard is None:
        store.remove_stale(out_dir, len(chunks))
    mine = [c for c, members in enumerate(chunks) if shard is None or _chunk_shard(reader, members) == shard]
    sl, pre = header["slices"], encoder.preprocessing
    total = sum(len(selected(reader, i, sl)) * len(reader.channels(i)) for c in mine for i in chunks[c])
    name = f"features {header['encoder']}/{split}" + (f"/shard {shard}" if shard is not None else "")
    prog = Progress(total, name, log, every_s=progress_every_s, unit="slices")
    sidecars, done, encoded = [], 0, 0
    for c in mine:
        members = chunks[c]
        fp = fingerprint(split, header, reader, members)
        side = store.finished(out_dir, c, fp)
        if side is not None:
            sidecars.append(side)
            done += 1
            prog.update(side["n_tokens"])
            continue
        items = (it for i in members for it in volume_items(reader, i, sl, pre))
        with store.ChunkWriter(out_dir, c, header["dim"], fp) as w:
            for it, feats in encode_items(encoder, items, int(batch_size), device, precision):
                coords = np.zeros((len(it["slices"]), 3), dtype=np.int64)
                coords[:, 0] = it["slices"]
                w.add(it["meta"], feats.numpy(), coords)
                prog.update(feats.shape[0])
                encoded += feats.shape[0]
        sidecars.append(w.sidecar())
    prog.close()
    index_header = {k: v for k, v in header.items() if k != "chunk_tokens"}
    summary = finish_extraction(
        out_dir, split, index_header, header["chunk_tokens"], chunks, mine, sidecars, encoded, done, shard
    )
    reader.close()
    return summary


def make_header(name: str, encoder, spec: dict, chunk_tokens: int) -> dict:
    """The index header: which encoder (``label`` and ``weights`` say when the weights are random), its
    preprocessing and slicing; ``chunk_tokens`` travels to the merge and is dropped from the index."""
    from neurovfm.features.encoders import weights_digest

    pre = encoder.preprocessing.as_dict()
    return {
        "encoder": name,
        "label": encoder.info["label"],
        "weights": encoder.info["weights"],
        "model": encoder.info,
        "weights_sha256": weights_digest(encoder),
        "dim": int(encoder.embed_dim),
        "token": TOKEN,
        "slices": slicing(spec),
        "preprocessing": {
            **pre,
            "steps": "voxel / 255; zero-pad to a centred square; bilinear antialiased resize to image_size; "
            "grey to 3 channels; (x - mean) / std; each CT window a separate image",
        },
        "chunk_tokens": int(chunk_tokens),
    }


def extract(
    encoder,
    name: str,
    spec: dict,
    shard_indices: dict,
    out_dir,
    device: torch.device,
    chunk_tokens: int,
    precision: str,
    progress_every_s: float,
    shard: int | None = None,
) -> dict:
    """Every split of ``shard_indices`` (split -> shards index.json) into ``out_dir/{split}/``."""
    encoder = encoder.to(device).eval()
    header = make_header(name, encoder, spec, chunk_tokens)
    out = {}
    for split, index_path in shard_indices.items():
        out[split] = extract_split(
            encoder,
            split,
            index_path,
            Path(out_dir) / split,
            header,
            device,
            batch_size=int(spec["batch_size"]),
            precision=precision,
            progress_every_s=progress_every_s,
            shard=shard,
        )
        log.info("features %s/%s: %s", header["label"], split, {k: v for k, v in out[split].items() if k != "part"})
    return out


def merge(split: str, index_path, out_dir, parts: list, n_shards: int) -> dict:
    """The split's index.json from its shard jobs' parts (checked against this module's plan and fingerprints)."""
    return merge_split(split, index_path, {}, out_dir, parts, n_shards, plan=plan, fingerprint=fingerprint)
