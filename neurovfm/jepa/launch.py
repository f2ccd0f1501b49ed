"""How the workflow starts pretraining: one CPU process, ``torchrun`` over the GPUs of one node, or
``srun`` + ``torchrun`` with a c10d rendezvous across the nodes of a SLURM job."""

from __future__ import annotations

import os
import subprocess
import sys

RDZV_PORT = 29500


def launch_command(
    cli_args: list[str],
    gpus: int,
    nodes: int = 1,
    head: str | None = None,
    job_id: str | None = None,
    port: int = RDZV_PORT,
) -> list[str]:
    """The command running ``neurovfm <cli_args>`` on ``gpus`` GPUs per node over ``nodes`` nodes (gpus 0:
    a plain process on the CPU)."""
    module = ["-m", "neurovfm.cli", *cli_args]
    if gpus <= 0:
        return [sys.executable, *module]
    if nodes <= 1:
        return ["torchrun", "--standalone", f"--nproc_per_node={gpus}", *module]
    if not head or not job_id:
        raise ValueError("a multi-node launch needs the head node and the SLURM job id for the rendezvous")
    return [
        "srun",
        "--ntasks-per-node=1",
        f"--nodes={nodes}",
        "--overlap",
        "--kill-on-bad-exit=1",
        "torchrun",
        f"--nnodes={nodes}",
        f"--nproc_per_node={gpus}",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint={head}:{port}",
        f"--rdzv_id={job_id}",
        *module,
    ]


def slurm_head_node() -> str:
    """First host of this SLURM job's allocation."""
    nodelist = os.environ.get("SLURM_JOB_NODELIST")
    if not nodelist:
        raise RuntimeError("a multi-node pretraining job must run inside a SLURM allocation (no SLURM_JOB_NODELIST)")
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], check=True, capture_output=True, text=True)
    return out.stdout.split()[0]
