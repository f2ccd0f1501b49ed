"""DDP on CPU: two processes (gloo) take one step on different data and end with equal weights; the
launcher builds the torchrun command the workflow runs."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from neurovfm.config import default_config
from neurovfm.jepa import checkpoint as ckpt
from neurovfm.jepa.launch import launch_command
from neurovfm.jepa.toy import ToyVolumes
from neurovfm.jepa.train import Trainer, init_distributed

TINY = {"encoder": "tiny", "predictor_dim": 48, "predictor_depth": 1, "predictor_heads": 2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    cfg = default_config(pretrain={"models": {"t": TINY}, "steps": 1, "batch_size": 4, "progress_every_s": 1000})
    d = init_distributed()
    try:
        trainer = Trainer(cfg, "t", ToyVolumes(n=8, grid=(4, 5, 5), seed=0), out, d)
        trainer.run()
        torch.save(
            {"student": trainer.student.state_dict(), "teacher": trainer.teacher.state_dict()},
            os.path.join(out, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def test_two_cpu_processes_stay_in_sync(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for part in ("student", "teacher"):
        for key, value in r0[part].items():
            assert torch.equal(value, r1[part][key]), f"{part}.{key} differs between ranks"
    state = ckpt.load(tmp_path / ckpt.CHECKPOINT)
    assert state["world_size"] == 2 and state["step"] == 1
    assert [r["position"] for r in state["ranks"]] == [[0, 2], [0, 2]]  # 2 volumes each, different studies
    init = Trainer(
        default_config(pretrain={"models": {"t": TINY}}), "t", ToyVolumes(n=8, grid=(4, 5, 5)), tmp_path / "x"
    )
    moved = [k for k, v in init.student.state_dict().items() if not torch.equal(v, r0["student"][k])]
    assert moved, "the step changed the weights"


def test_launch_command():
    args = ["jepa", "train", "--model", "base"]
    assert launch_command(args, gpus=0)[1:] == ["-m", "neurovfm.cli", *args]
    one = launch_command(args, gpus=8)
    assert one == ["torchrun", "--standalone", "--nproc_per_node=8", "-m", "neurovfm.cli", *args]
    many = launch_command(args, gpus=8, nodes=4, head="node01", job_id="77")
    assert many[:2] == ["srun", "--ntasks-per-node=1"] and many[-6:] == ["-m", "neurovfm.cli", *args]
    assert "--nnodes=4" in many and "--rdzv_backend=c10d" in many and "--rdzv_endpoint=node01:29500" in many
    assert "--rdzv_id=77" in many
