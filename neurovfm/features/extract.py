"""The extraction loop: every volume of a split, whole (no crop, no truncation), each CT window as its own
single-channel pass, normalised exactly as in pretraining (``voxel / 255``, then z-scored with the train split's
statistics per modality and channel), through a frozen encoder; only foreground tokens (the shard's token mask)
are encoded and kept, with their integer (slice, row, col) token coordinates.

Sequences (one per volume and window) are packed back to back up to ``max_tokens`` tokens per forward pass
(a sequence longer than the budget is encoded alone, whole); each attends only to itself, so packing does not
change the features. bf16 autocast on CUDA, fp32 on CPU (``precision: auto``).

Volumes are grouped into chunks of about ``chunk_tokens`` stored tokens, whole studies at a time, in index
order; chunks are the unit of resumption (see :mod:`neurovfm.features.store`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch

from neurovfm.features import store
from neurovfm.models.packing import cu_seqlens_from_lengths
from neurovfm.models.patch_embed import patchify
from neurovfm.store.dataset import LazyVolume, VolumeDataset
from neurovfm.utils.failure import IncompleteParts
from neurovfm.utils.progress import Progress

log = logging.getLogger("neurovfm")


def windows(reader, i: int) -> list[str]:
    """Channels encoded for volume ``i``: every CT window, or the single MR channel."""
    return reader.channels(i)


def plan_chunks(reader, chunk_tokens: int, cost=None) -> list[list[int]]:
    """Volume positions per chunk: whole studies (in order of first appearance), a new chunk once the
    current one holds ``chunk_tokens`` stored tokens (foreground tokens x windows, or ``cost(i)`` for volume ``i``)
    or more, and at every shard boundary (a chunk never spans two input shards, so one job per shard writes whole
    chunks)."""
    if cost is None:

        def cost(i):
            return reader.volumes[i]["mask"]["n_foreground"] * len(windows(reader, i))

    studies: dict[str, list[int]] = {}
    for i, v in enumerate(reader.volumes):
        studies.setdefault(v["study_id"], []).append(i)
    chunks, cur, n = [], [], 0
    for members in studies.values():
        if cur and (n >= chunk_tokens or reader.volumes[members[0]]["shard"] != reader.volumes[cur[-1]]["shard"]):
            chunks.append(cur)
            cur, n = [], 0
        cur.extend(members)
        n += sum(cost(i) for i in members)
    if cur or not chunks:
        chunks.append(cur)
    return chunks


def volume_items(dataset: VolumeDataset, i: int, patch) -> list[dict]:
    """One item per window of volume ``i``: ``meta`` (index entry fields), ``patches`` float32 [n, prod(patch)]
    and ``coords`` int64 [n, 3] of the foreground tokens, in C order over the token grid."""
    item = dataset[i]
    entry = dataset.volumes[i]
    image = item["image"]
    if isinstance(image, LazyVolume):  # only the foreground tokens are read and normalised (the same values)
        fg = torch.nonzero(item["token_mask"])  # C order over the grid, as patchify's rows
        blocks = image.blocks(fg.numpy(), patch)  # [n, C, pz, py, px]
        per_channel = [
            (torch.from_numpy(np.ascontiguousarray(blocks[:, c]).reshape(len(fg), int(np.prod(patch)))), fg)
            for c in range(blocks.shape[1])
        ]
    else:
        mask = item["token_mask"].reshape(-1)
        per_channel = [tuple(t[mask] for t in patchify(image[c : c + 1], patch)) for c in range(image.shape[0])]
    out = []
    for (patches, coords), name in zip(per_channel, item["channels"]):
        out.append(
            {
                "meta": {
                    "series_id": entry["series_id"],
                    "study_id": entry["study_id"],
                    "modality": entry["modality"],
                    "sequence": entry.get("sequence"),
                    "window": name,
                    "grid": list(item["token_mask"].shape),
                },
                "patches": patches,
                "coords": coords,
            }
        )
    return out


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA for ``auto``/``bf16``; plain fp32 otherwise (always on CPU for ``auto``)."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    if device.type == "cuda" and precision in ("auto", "bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def encode_pack(encoder, items: list[dict], device: torch.device, precision: str = "auto") -> list[torch.Tensor]:
    """Encode several items as one packed sequence batch -> per item fp32 features [n_i, D] on the CPU."""
    lengths = [it["patches"].shape[0] for it in items]
    patches = torch.cat([it["patches"] for it in items]).to(device, non_blocking=True)
    coords = torch.cat([it["coords"] for it in items]).to(device, non_blocking=True)
    cu, max_len = cu_seqlens_from_lengths(lengths, device=device)
    with autocast(device, precision):
        x = encoder(patches, coords, cu, max_len)
    return list(x.float().cpu().split(lengths))


def encode_items(encoder, items, max_tokens: int, device: torch.device, precision: str = "auto"):
    """Yield ``(item, features fp32 [n, D])`` in input order, encoding packs of up to ``max_tokens`` tokens
    (an item above the budget alone; items without tokens are not encoded)."""
    dim = encoder.embed_dim
    pack, n = [], 0

    def flush():
        feats = encode_pack(encoder, pack, device, precision)
        return list(zip(pack, feats))

    for it in items:
        k = it["patches"].shape[0]
        if pack and n + k > max_tokens:
            yield from flush()
            pack, n = [], 0
        if k == 0:
            if pack:  # keep the order: flush what precedes the empty item first
                yield from flush()
                pack, n = [], 0
            yield it, torch.zeros(0, dim)
            continue
        pack.append(it)
        n += k
    if pack:
        yield from flush()


def chunk_fingerprint(split: str, header: dict, reader, members: list[int], stats: dict) -> str:
    mods = sorted({reader.volumes[i]["modality"] for i in members})
    key = {
        "format": store.FORMAT,
        "version": store.VERSION,
        "split": split,
        "weights": header["weights_sha256"],
        "patch": header["patch"],
        "dtype": np.dtype(store.DTYPE).name,
        "stats": {m: stats.get(m) for m in mods},
        "volumes": [
            [reader.volumes[i][k] for k in ("series_id", "shard", "offset", "nbytes")]
            + [reader.volumes[i]["mask"]["n_foreground"]]
            for i in members
        ],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def extract_split(
    encoder,
    split: str,
    index_path,
    stats: dict,
    out_dir,
    header: dict,
    device: torch.device,
    max_tokens: int,
    chunk_tokens: int,
    precision: str,
    progress_every_s: float,
    shard: int | None = None,
) -> dict:
    """Extract one split into ``out_dir`` (resuming finished chunks); returns a summary. ``shard``: only the
    chunks of that input shard, and no index (one job of the sharded workflow; :func:`merge_split` writes
    the index); the summary then holds the ``part`` record the merge checks."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / store.INDEX_NAME).unlink(missing_ok=True)  # written last again
    dataset = VolumeDataset(index_path, stats, lazy=True)
    reader = dataset.reader
    patch = tuple(reader.index["patch"])
    chunks = plan_chunks(reader, int(chunk_tokens))
    if shard is None:
        store.remove_stale(out_dir, len(chunks))
    header = {**header, "split": split, "patch": list(patch)}
    mine = [c for c, members in enumerate(chunks) if shard is None or _chunk_shard(reader, members) == shard]
    total = sum(reader.volumes[i]["mask"]["n_foreground"] * len(windows(reader, i)) for c in mine for i in chunks[c])
    name = f"features {header['encoder']}/{split}" + (f"/shard {shard}" if shard is not None else "")
    prog = Progress(total, name, log, every_s=progress_every_s, unit="tokens")
    sidecars, done, encoded = [], 0, 0
    for c in mine:
        members = chunks[c]
        fp = chunk_fingerprint(split, header, reader, members, stats)
        side = store.finished(out_dir, c, fp)
        if side is not None:
            sidecars.append(side)
            done += 1
            prog.update(side["n_tokens"])
            continue
        items = (it for i in members for it in volume_items(dataset, i, patch))
        with store.ChunkWriter(out_dir, c, header["dim"], fp) as w:
            for it, feats in encode_items(encoder, items, int(max_tokens), device, precision):
                w.add(it["meta"], feats.numpy(), it["coords"].numpy())
                prog.update(feats.shape[0])
                encoded += feats.shape[0]
        sidecars.append(w.sidecar())
    prog.close()
    summary = finish_extraction(out_dir, split, header, chunk_tokens, chunks, mine, sidecars, encoded, done, shard)
    reader.close()
    return summary


PART_FORMAT = "neurovfm-features-part"


def finish_extraction(
    out_dir, split: str, header: dict, chunk_tokens: int, chunks, mine, sidecars, encoded: int, done: int, shard
) -> dict:
    """The summary of one extraction job over its chunks ``mine`` (3D or slice-wise). Unsharded, the split's
    ``index.json`` is written here; sharded, the summary carries the part record the merge checks (its header with
    ``chunk_tokens``, the chunks' fingerprints)."""
    summary = {
        "split": split,
        "volumes": sum(len(chunks[c]) for c in mine),
        "entries": sum(len(s["entries"]) for s in sidecars),
        "tokens": sum(s["n_tokens"] for s in sidecars),
        "tokens_encoded": encoded,
        "chunks": len(mine),
        "chunks_reused": done,
    }
    if shard is None:
        store.write_index(out_dir, header, sidecars)
    else:
        summary["part"] = {
            "format": PART_FORMAT,
            "split": split,
            "shard": int(shard),
            "header": {**header, "chunk_tokens": int(chunk_tokens)},
            "chunks": [{"chunk": c, "fingerprint": s["fingerprint"]} for c, s in zip(mine, sidecars)],
        }
    return summary


class FeaturePartsError(IncompleteParts):
    """The merge of the sharded extraction found a part missing, extra, mixed or out of date."""


def _chunk_shard(reader, members: list[int]) -> int:
    return int(reader.volumes[members[0]]["shard"]) if members else 0


def merge_split(
    split: str, index_path, stats: dict, out_dir, parts: list, n_shards: int, plan=None, fingerprint=None
) -> dict:
    """Write the split's ``index.json`` from the part files of its shard jobs (one per shard, ``0..n_shards-1``),
    after checking that together they hold exactly the split's chunk plan, every chunk finished with the
    fingerprint the plan gives it. The index is byte-identical to the one of a single :func:`extract_split`.
    ``plan(reader, header)`` and ``fingerprint(split, header, reader, members)``: another extractor's chunk plan and
    fingerprints (default: this module's, for 3D token features)."""
    if plan is None:

        def plan(reader, header):
            return plan_chunks(reader, int(header["chunk_tokens"]))

    if fingerprint is None:

        def fingerprint(split, header, reader, members):
            return chunk_fingerprint(split, header, reader, members, stats)

    from neurovfm.store.reader import ShardReader

    out_dir = Path(out_dir)
    got: dict[int, dict] = {}
    for path in parts:
        try:
            rec = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise FeaturePartsError(f"features merge: part {Path(path).name} cannot be read ({type(err).__name__})")
        if not isinstance(rec, dict) or rec.get("format") != PART_FORMAT or rec.get("split") != split:
            raise FeaturePartsError(f"features merge: {Path(path).name} is not a {PART_FORMAT} file of split {split}")
        s = rec.get("shard")
        if not isinstance(s, int) or not 0 <= s < n_shards:
            raise FeaturePartsError(f"features merge: extra part {Path(path).name} (shard {s} of {n_shards})")
        if s in got:
            raise FeaturePartsError(f"features merge: shard {split}/{s} given twice")
        got[s] = rec
    missing = [s for s in range(n_shards) if s not in got]
    if missing:
        raise FeaturePartsError(
            f"features merge: {len(missing)} of {n_shards} shard parts of {split} missing ({', '.join(map(str, missing))})"
        )
    headers = {json.dumps(got[s]["header"], sort_keys=True) for s in range(n_shards)}
    if len(headers) > 1:
        raise FeaturePartsError(f"features merge: the parts of {split} come from different encoders or settings")
    header = got[0]["header"]
    reader = ShardReader(index_path)
    try:
        chunks = plan(reader, header)
        expected = [fingerprint(split, header, reader, members) for members in chunks]
    finally:
        reader.close()
    recorded = {c["chunk"]: c["fingerprint"] for s in range(n_shards) for c in got[s]["chunks"]}
    if recorded != dict(enumerate(expected)):
        raise FeaturePartsError(
            f"features merge: the parts of {split} hold {len(recorded)} chunks, the plan {len(expected)} "
            "(or their fingerprints differ); rerun the split's features jobs"
        )
    sidecars = []
    for c, fp in enumerate(expected):
        side = store.finished(out_dir, c, fp)
        if side is None:
            raise FeaturePartsError(f"features merge: chunk {c} of {split} is missing or out of date")
        sidecars.append(side)
    store.remove_stale(out_dir, len(chunks))
    index = store.write_index(out_dir, {k: v for k, v in header.items() if k != "chunk_tokens"}, sidecars)
    return {"split": split, "entries": len(index["entries"]), "chunks": len(chunks)}


def resolve_device(device: str | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def extract(
    encoder,
    name: str,
    model_cfg: dict,
    shard_indices: dict,
    stats_json,
    out_dir,
    device: str | torch.device | None = None,
    **settings,
) -> dict:
    """Every split of ``shard_indices`` (split -> shards index.json) into ``out_dir/{split}/``."""
    from neurovfm.features.encoders import weights_digest
    from neurovfm.store.stats import load_stats

    device = device if isinstance(device, torch.device) else resolve_device(device)
    encoder = encoder.to(device).eval()
    stats = load_stats(stats_json)
    opts = dict(settings)  # max_tokens, chunk_tokens, precision, progress_every_s (config section `features`)
    shard = opts.pop("shard", None)  # one input shard only, no index (a job of the sharded workflow)
    header = {
        "encoder": name,
        "model": model_cfg,
        "weights_sha256": weights_digest(encoder),
        "dim": int(encoder.embed_dim),
        "normalisation": {
            "scale": "voxel / 255",
            "zscore": "train split stats per modality and channel",
            "stats": stats,
        },
    }
    out = {}
    for split, index_path in shard_indices.items():
        out[split] = extract_split(
            encoder,
            split,
            index_path,
            stats,
            Path(out_dir) / split,
            header,
            device,
            max_tokens=opts["max_tokens"],
            chunk_tokens=opts["chunk_tokens"],
            precision=opts["precision"],
            progress_every_s=opts["progress_every_s"],
            shard=shard,
        )
        log.info("features %s/%s: %s", name, split, {k: v for k, v in out[split].items() if k != "part"})
    return out
