"""HLIP under DDP on CPU: two processes (gloo), each with its share of a balanced batch, gather the embeddings with
their gradients, so both end with the gradients of one process holding the whole batch (each modality's softmax
runs over the global batch).

A check rather than a test of the CI suite (two processes importing transformers take 20 s to minutes on 2 shared
cores):  ``python benchmarks/hlip_ddp_check.py`` prints the largest gradient difference and exits 1 on a mismatch.
Measured 2026-12-06 on 2 busy CPU cores: passes, 98 s."""

import os
import socket
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from neurovfm.config import default_config
from neurovfm.hlip.collate import StudyCollator
from neurovfm.hlip.model import build_hlip
from neurovfm.hlip.stream import BalancedStudyStream
from neurovfm.hlip.text import TextTokenizer
from neurovfm.hlip.train import clip_step, training_texts
from neurovfm.jepa.build import model_config
from neurovfm.jepa.train import Dist, init_distributed, param_groups

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hlip_fixtures import TINY_HLIP, PairedToy  # noqa: E402

HLIP = {**TINY_HLIP, "batch_studies": 8}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gradients(d: Dist, reports: str) -> tuple[float, dict]:
    """Loss and parameter gradients of one step on batch 0 (this process's share of it), dropout off."""
    cfg = default_config(pretrain={"models": {"h": HLIP}, "train": ["h"]})
    data = PairedToy(n_studies=8)
    model = model_config(cfg["pretrain"], "h", cfg["preprocess"]["patch"])
    texts = training_texts(model, data.volumes, {"reports": reports})
    torch.manual_seed(0)
    hlip, tokenizer = build_hlip(model, texts)
    hlip.eval()
    stream = BalancedStudyStream(data.volumes, set(texts), 8, seed=0, rank=d.rank, world_size=d.world_size)
    items = [{**data[i], "epoch": b, "offset": j} for b, j, i in stream.batch(0)]
    batch = StudyCollator(cfg["pretrain"], cfg["preprocess"]["patch"], 0, texts, TextTokenizer(tokenizer, 32))(items)
    module = DistributedDataParallel(hlip) if d.enabled else hlip
    out = clip_step(module, batch, torch.optim.AdamW(param_groups(hlip)), 1e9, None, d)
    return float(out["loss"]), {n: p.grad.clone() for n, p in hlip.named_parameters()}


def _worker(rank: int, world: int, port: int, reports: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    d = init_distributed()
    try:
        torch.save(gradients(d, reports), os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="hlip_ddp_"))
    reports = tmp / "reports.jsonl"
    PairedToy(n_studies=8).write_reports(reports)
    mp.spawn(_worker, args=(2, _free_port(), str(reports), str(tmp)), nprocs=2, join=True)
    loss, grads = gradients(Dist(), str(reports))
    scale = max(float(g.abs().max()) for g in grads.values())  # a few gradients are 0 up to rounding (key bias)
    failed = 0
    for rank in (0, 1):
        loss_r, grads_r = torch.load(tmp / f"rank{rank}.pt")
        worst = max(float((grads_r[n] - g).abs().max()) for n, g in grads.items()) / scale
        bad = [n for n, g in grads.items() if not torch.allclose(grads_r[n], g, rtol=1e-3, atol=1e-5 * scale)]
        print(
            f"rank {rank}: loss {loss_r:.6f} (one process: {loss:.6f}), largest gradient difference {worst:.2e} "
            f"of the largest gradient, {len(bad)} parameters differ {bad[:3]}"
        )
        failed += bool(bad) or abs(loss_r - loss) > 1e-5
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
