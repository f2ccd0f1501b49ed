"""Frozen feature extraction throughput on MRI studies: studies/s of the package's features stage.

The timed path is the workflow's own (:func:`neurovfm.features.extract.extract`): read each volume from the shards,
scale and z-score it, cut its foreground tokens, encode packs of up to ``--max-tokens`` tokens (bf16 autocast on
CUDA), write the feature chunks. It runs on an MRI-only copy of a split's index (the shard files are linked, not
copied), so the rate counts MRI studies (all series of a study; the paper: about 3 s per study). A warm-up
extraction of ``--warmup-studies`` studies runs first (CUDA context, kernel selection) and is not timed.

A second rate, ``encode_only``, times the encoder alone on the same studies' tokens held in memory (the
upper bound the data path leaves room for). The encoder has random weights (the rate does not depend on them).

Each device of ``--devices`` is one row: by default CUDA (when present) and then the CPU as a baseline on
``--cpu-max-studies`` studies, so a GPU run also says how much faster it is than this machine's CPU.

Usage: python benchmarks/feature_throughput.py OUT.json --index results/demo/shards/train/index.json
       [--stats results/demo/shards/train/stats.json] [--model base] [--devices cuda cpu] [--max-studies N]
       [--cpu-max-studies 4] [--max-tokens 65536] [--warmup-studies 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neurovfm.config import load_config  # noqa: E402
from neurovfm.features.extract import encode_items, extract, volume_items  # noqa: E402
from neurovfm.jepa.build import build_models  # noqa: E402
from neurovfm.models.vit import VIT_SIZES  # noqa: E402
from neurovfm.store.dataset import VolumeDataset  # noqa: E402
from neurovfm.store.index import load_index, write_index  # noqa: E402
from neurovfm.store.stats import load_stats  # noqa: E402

MRI = "MR"


def mri_studies(index: dict) -> list[str]:
    """MRI study ids in index order (first appearance)."""
    seen: dict[str, None] = {}
    for v in index["volumes"]:
        if v["modality"] == MRI:
            seen.setdefault(v["study_id"], None)
    return list(seen)


def subset_index(index_path: Path, studies: list[str], out_dir: Path) -> Path:
    """An index of ``studies``' MRI volumes in ``out_dir``, next to links to the split's shard files."""
    index = load_index(index_path)
    keep = set(studies)
    out_dir.mkdir(parents=True, exist_ok=True)
    for shard in index["shards"]:
        link = out_dir / shard["file"]
        if not link.exists():
            link.symlink_to((index_path.parent / shard["file"]).resolve())
    sub = {**index, "volumes": [v for v in index["volumes"] if v["modality"] == MRI and v["study_id"] in keep]}
    write_index(out_dir / "index.json", sub)
    return out_dir / "index.json"


def build_encoder(size: str, patch) -> tuple[torch.nn.Module, dict]:
    """A frozen encoder of ``size`` with seeded random weights and its model config."""
    model = {"name": f"random-{size}", "encoder": size, "patch_size": [int(p) for p in patch], "in_chans": 1}
    torch.manual_seed(0)
    encoder = build_models(model, encoder_only=True)
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder.eval(), model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def encode_only_s(
    encoder, index_path: Path, stats: dict, device: torch.device, max_tokens: int, precision: str
) -> float:
    """Seconds to encode the index's foreground tokens already in memory (data path excluded)."""
    dataset = VolumeDataset(index_path, stats)
    patch = tuple(dataset.reader.index["patch"])
    items = [it for i in range(len(dataset)) for it in volume_items(dataset, i, patch)]
    sync(device)
    t0 = time.perf_counter()
    for _ in encode_items(encoder, items, max_tokens, device, precision):
        pass
    sync(device)
    return time.perf_counter() - t0


def measure(
    device: torch.device,
    size: str,
    index_path: Path,
    stats_path: Path,
    studies: list[str],
    warmup: list[str],
    work: Path,
    settings: dict,
) -> dict:
    """One device's row: the features stage on ``studies`` (after an untimed warm-up on ``warmup``)."""
    index = load_index(index_path)
    encoder, model = build_encoder(size, index["patch"])
    encoder = encoder.to(device)
    stats = load_stats(stats_path)
    if warmup:
        warm = subset_index(index_path, warmup, work / f"{device.type}-warmup-index")
        extract(
            encoder,
            model["name"],
            model,
            {"warmup": warm},
            stats_path,
            work / f"{device.type}-warmup",
            device=device,
            **settings,
        )
    timed = subset_index(index_path, studies, work / f"{device.type}-index")
    sync(device)
    t0 = time.perf_counter()
    summary = extract(
        encoder,
        model["name"],
        model,
        {"mri": timed},
        stats_path,
        work / f"{device.type}-features",
        device=device,
        **settings,
    )["mri"]
    sync(device)
    wall = time.perf_counter() - t0
    enc_s = encode_only_s(encoder, timed, stats, device, int(settings["max_tokens"]), settings["precision"])
    n = len(studies)
    row = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "model": size,
        "studies": n,
        "volumes": summary["volumes"],
        "tokens": summary["tokens"],
        "wall_s": wall,
        "studies_per_s": n / wall,
        "s_per_study": wall / n,
        "volumes_per_s": summary["volumes"] / wall,
        "tokens_per_s": summary["tokens"] / wall,
        "encode_only_s": enc_s,
        "encode_only_studies_per_s": n / enc_s if enc_s > 0 else None,
    }
    print(
        f"{device}: {n} MRI studies ({row['volumes']} volumes, {row['tokens']} tokens) in {wall:.2f} s: "
        f"{row['studies_per_s']:.2f} studies/s ({row['s_per_study']:.3f} s/study); encoder alone "
        f"{enc_s:.2f} s",
        flush=True,
    )
    del encoder
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def run(args, save=None) -> dict:
    """Every device's row; ``save(result)`` is called after each row (a killed run keeps the rows it finished)."""
    cfg = load_config(args.config)
    index_path = Path(args.index)
    stats_path = Path(args.stats) if args.stats else index_path.parent / "stats.json"
    all_studies = mri_studies(load_index(index_path))
    if not all_studies:
        raise SystemExit(f"{index_path} holds no MRI ({MRI}) volume")
    devices = args.devices or (["cuda", "cpu"] if torch.cuda.is_available() else ["cpu"])
    settings = {
        "max_tokens": args.max_tokens or cfg["features"]["max_tokens"],
        "chunk_tokens": cfg["features"]["chunk_tokens"],
        "precision": cfg["features"]["precision"],
        "progress_every_s": float("inf"),
    }
    rows = []
    result = {
        "index": str(index_path),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "settings": {k: v for k, v in settings.items() if k != "progress_every_s"},
        "rows": rows,
    }
    with tempfile.TemporaryDirectory(prefix="feature_throughput-", dir=args.work) as tmp:
        for name in devices:
            device = torch.device(name)
            if device.type == "cuda" and not torch.cuda.is_available():
                rows.append({"device": name, "skipped": f"torch {torch.__version__} sees no CUDA device"})
                print(f"{name}: skipped (no CUDA)", flush=True)
                if save is not None:
                    save(result)
                continue
            limit = args.cpu_max_studies if device.type == "cpu" and len(devices) > 1 else args.max_studies
            warm = all_studies[: args.warmup_studies]
            timed = all_studies[:limit] if limit else all_studies
            rows.append(
                measure(
                    device,
                    args.model or ("base" if torch.cuda.is_available() else "tiny"),
                    index_path,
                    stats_path,
                    timed,
                    warm,
                    Path(tmp) / name,
                    settings,
                )
            )
            if save is not None:
                save(result)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="JSON result path")
    ap.add_argument("--index", required=True, help="a split's shards index.json (its MRI studies are used)")
    ap.add_argument("--stats", help="train stats.json (default: next to --index)")
    ap.add_argument("--config", default=str(ROOT / "config.yaml"), help="features settings (section `features`)")
    ap.add_argument("--model", choices=sorted(VIT_SIZES), help="encoder size (default: base with CUDA, else tiny)")
    ap.add_argument("--devices", nargs="+", help="devices measured in turn (default: cuda then cpu, or cpu)")
    ap.add_argument("--max-studies", type=int, help="MRI studies timed (default: all of the split)")
    ap.add_argument(
        "--cpu-max-studies",
        type=int,
        default=4,
        help="MRI studies of the CPU baseline when it follows another device (default: 4)",
    )
    ap.add_argument("--warmup-studies", type=int, default=2, help="studies of the untimed warm-up extraction")
    ap.add_argument("--max-tokens", type=int, help="tokens per forward pass (default: features.max_tokens)")
    ap.add_argument("--work", default=os.environ.get("TMPDIR"), help="scratch folder (default: the system's)")
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(result: dict) -> None:
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2))
        tmp.replace(out)

    save(run(args, save))
    return 0


if __name__ == "__main__":
    sys.exit(main())
