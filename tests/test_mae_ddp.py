"""VideoMAE under DDP on CPU: two processes (gloo) take one step on different data and end with equal encoder and
decoder weights; metrics.csv counts the masked tokens of both processes."""

import os
import socket

import pandas as pd
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from neurovfm.config import default_config
from neurovfm.jepa import checkpoint as ckpt
from neurovfm.jepa.toy import ToyVolumes
from neurovfm.jepa.train import init_distributed
from neurovfm.mae.train import MAETrainer
from mae_fixtures import TINY_MAE

MAE = TINY_MAE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    cfg = default_config(
        pretrain={"models": {"m": MAE}, "train": ["m"], "steps": 1, "batch_size": 4, "progress_every_s": 1000}
    )
    d = init_distributed()
    try:
        trainer = MAETrainer(cfg, "m", ToyVolumes(n=8, grid=(4, 5, 5), seed=0), out, d)
        trainer.run()
        torch.save(trainer.mae.state_dict(), os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_cpu_processes_stay_in_sync(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for key, value in r0.items():
        assert torch.equal(value, r1[key]), f"{key} differs between ranks"
    state = ckpt.load(tmp_path / ckpt.CHECKPOINT)
    assert state["world_size"] == 2 and state["step"] == 1 and set(state["modules"]) == {"encoder", "decoder"}
    samples = pd.read_csv(tmp_path / "context_fractions.csv")
    assert sorted(samples["rank"].unique()) == [0, 1]
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    masked = int((samples["n_foreground"] - samples["n_context"]).sum())
    assert metrics["n_masked"].tolist() == [masked] and metrics["n_tokens"].tolist() == [samples["n_foreground"].sum()]
