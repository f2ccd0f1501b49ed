"""Report-generation training over two CPU processes (gloo) with FSDP2: the LLM is sharded, steps run, and
rank 0's checkpoint (gathered tensors) loads into a single-process model and resumes there; micro-batches with
gradient sync on the last one only train the same weights; the torchrun launch."""

import math
import os
import socket

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from neurovfm.jepa.train import Dist
from neurovfm.reportgen import distributed as dd
from reportgen_fixtures import make_inputs, tiny_config

torch.set_num_threads(1)
WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _trainer(cfg, paths, out, d=None):
    from neurovfm.reportgen.data import StudyTokens, load_findings, load_indications
    from neurovfm.reportgen.run import curated_ids, training_pool
    from neurovfm.reportgen.train import Trainer

    studies = StudyTokens(paths["train"], cfg["reportgen"])
    findings = load_findings(paths["findings"])
    curated = curated_ids(cfg, training_pool(findings, studies), paths["ct"], paths["mri"], 8)
    return Trainer(cfg, studies, findings, load_indications(paths["reports"]), curated, out, dist=d)


def _worker(rank: int, port: int, tmp: str, paths: dict, strategy: str) -> None:
    from torch.distributed.tensor import DTensor

    from neurovfm.jepa.checkpoint import load as load_checkpoint
    from neurovfm.jepa.train import init_distributed
    from neurovfm.reportgen.train import CHECKPOINT

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    d = init_distributed()
    try:
        cfg = tiny_config(tmp, distributed={"strategy": strategy, "gpus": 0})
        out = os.path.join(tmp, "dist")
        trainer = _trainer(cfg, paths, out, d)
        shards = {
            n: (p.to_local().shape[0], p.shape[0])
            for n, p in trainer.model.named_parameters()
            if isinstance(p, DTensor)
        }
        trainer.run()
        gathered = dd.full_state(trainer.model.state_dict())
        # a second sharded trainer restores the checkpoint: the optimiser state survives the shard/gather trip
        again = _trainer(cfg, paths, out, d)
        state = again._resume_state()
        params = again.setup_stage(state["stage"])
        optimizer = torch.optim.AdamW(params)
        again.restore(state, optimizer)
        restored = dd.full_optimizer_state(optimizer.state_dict())
        # the same run in micro-batches of one study per rank: gradients reduced once per step, same result
        cfg_micro = tiny_config(
            tmp,
            distributed={"strategy": strategy, "gpus": 0},
            stage1={"epochs": 1, "lr": 1e-3, "batch_size": 4, "micro_batch_size": 1},
            stage2={"epochs": 1, "lr": 1e-3, "batch_size": 4, "micro_batch_size": 1, "finetune": "full"},
        )
        micro = _trainer(cfg_micro, paths, os.path.join(tmp, "dist_micro"), d)
        micro.run()
        gathered_micro = dd.full_state(micro.model.state_dict())
        if rank == 0:
            ckpt = load_checkpoint(os.path.join(out, CHECKPOINT))
            same = all(
                torch.equal(v, restored["state"][i][k])
                for i, s in ckpt["optimizer"]["state"].items()
                for k, v in s.items()
            )
            torch.save(
                {"gathered": gathered, "optimizer_roundtrip": same, "gathered_micro": gathered_micro},
                os.path.join(tmp, "gathered.pt"),
            )
        torch.save(
            {"shards": shards, "rows": trainer.rows, "rows_micro": micro.rows}, os.path.join(tmp, f"rank{rank}.pt")
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("strategy", ["fsdp", "ddp"])
def test_two_cpu_processes(tmp_path, strategy):
    from neurovfm.jepa.checkpoint import load as load_checkpoint
    from neurovfm.reportgen.train import CHECKPOINT, load_trainable

    paths = make_inputs(tmp_path / "in")
    mp.spawn(_worker, args=(_free_port(), str(tmp_path), paths, strategy), nprocs=WORLD, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD))
    # fsdp: the LLM is sharded, every parameter split by rows, each rank holding about half; ddp: replicated
    for name, (rows0, total) in r0["shards"].items():
        rows1 = r1["shards"][name][0]
        assert rows0 + rows1 == total and rows0 in (math.ceil(total / 2), total // 2), name
    # both stages ran (2 + 2 steps of 4 items, 2 per rank), the same finite mean loss on both ranks
    assert [(r["stage"], r["step"]) for r in r0["rows"]] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert all(math.isfinite(r["loss"]) for r in r0["rows"])
    assert [r["loss"] for r in r0["rows"]] == [r["loss"] for r in r1["rows"]]
    out = tmp_path / "dist"
    assert (out / "connector.pt").is_file() and len(pd.read_csv(out / "metrics.csv")) == 4
    extra = torch.load(tmp_path / "gathered.pt")
    gathered = extra["gathered"]
    assert extra["optimizer_roundtrip"]
    # gradient accumulation over ranks (no_sync / FSDP2 gradient sync off until the last micro-batch)
    assert [r["loss"] for r in r0["rows_micro"]] == pytest.approx([r["loss"] for r in r0["rows"]], rel=1e-5)
    assert [r["loss"] for r in r0["rows_micro"]] == [r["loss"] for r in r1["rows_micro"]]
    for k, v in gathered.items():
        torch.testing.assert_close(extra["gathered_micro"][k], v, atol=2e-5, rtol=1e-4, msg=k)

    # rank 0's checkpoint and export load into one process, strictly, and equal the gathered weights
    cfg = tiny_config(tmp_path, distributed={"strategy": strategy, "gpus": 0})
    single = _trainer(cfg, paths, tmp_path / "single")
    initial = {k: v.clone() for k, v in single.model.state_dict().items()}
    assert len(r0["shards"]) == (len(dict(single.model.named_parameters())) if strategy == "fsdp" else 0)
    single.model.load_state_dict(gathered, strict=True)
    state = load_checkpoint(out / CHECKPOINT)
    single.connector.load_state_dict(state["connector"], strict=True)
    single.setup_stage(2)
    load_trainable(single.model, state["lm_trainable"])
    for k, v in single.model.state_dict().items():
        assert torch.equal(v, gathered[k]), k
    assert any(not torch.equal(initial[k], gathered[k]) for k in gathered), "training changed the LLM"
    exported = torch.load(out / "connector.pt")["state_dict"]
    for k, v in state["connector"].items():
        assert torch.equal(v, exported[k]), k
    # a single-process run resumes the distributed checkpoint (finished: nothing left but the export)
    resumed = _trainer(cfg, paths, out)
    resumed.run()
    for k, v in resumed.model.state_dict().items():
        assert torch.equal(v, gathered[k]), k
    assert [r["loss"] for r in resumed.rows] == [r["loss"] for r in r0["rows"]]


def test_sharding_policy_and_batch_split(tmp_path):
    from neurovfm.reportgen.lm import tiny_qwen3
    from neurovfm.reportgen.tokenizer import train_bpe

    cfg = tiny_config(tmp_path)
    model = tiny_qwen3(cfg["reportgen"]["lm"]["tiny"], train_bpe(["a b c"], 300), seed=0)
    layers = dd.decoder_layers(model)
    assert [type(m).__name__ for m in layers] == ["Qwen3DecoderLayer"] * cfg["reportgen"]["lm"]["tiny"][
        "num_hidden_layers"
    ]
    with pytest.raises(ValueError):
        dd.decoder_layers(torch.nn.Linear(2, 2))
    assert dd.rank_items(list("abcde"), 0, 2) == list("ace") and dd.rank_items(list("abcde"), 1, 2) == list("bd")
    with pytest.raises(ValueError):
        dd.rank_items(["a"], 0, 2)
    with pytest.raises(ValueError):
        dd.wrap(dd.LlavaStep(torch.nn.Linear(2, 2), model, 0), "zero3", torch.device("cpu"), False)


def test_lora_under_fsdp_is_refused(tmp_path):
    paths = make_inputs(tmp_path / "in")
    cfg = tiny_config(
        tmp_path,
        stage2={"epochs": 1, "lr": 1e-3, "batch_size": 4, "finetune": "lora"},
        distributed={"strategy": "fsdp", "gpus": 0},
    )
    with pytest.raises(ValueError, match="strategy 'ddp'"):
        _trainer(cfg, paths, tmp_path / "out", Dist(rank=0, world_size=2))


def _lora_worker(rank: int, port: int, tmp: str, paths: dict) -> None:
    from neurovfm.jepa.train import init_distributed

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    d = init_distributed()
    try:
        trainer = _trainer(_lora_config(tmp), paths, os.path.join(tmp, "dist"), d)
        trainer.run()
        merged = {n: p.detach().clone() for n, p in trainer.model.state_dict().items()}  # after the export
        torch.save({"rows": trainer.rows, "merged": merged}, os.path.join(tmp, f"lora{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _lora_config(tmp):
    return tiny_config(
        tmp,
        stage2={"epochs": 1, "lr": 1e-3, "batch_size": 4, "micro_batch_size": 1, "finetune": "lora"},
        distributed={"strategy": "ddp", "gpus": 0},
    )


def test_lora_over_two_ddp_processes(tmp_path):
    """LoRA adapters trained by DDP stay equal on both ranks, move away from their initial values, and the
    exported LLM (adapters merged) loads into one process; a single process resumes the finished run."""
    from transformers import AutoModelForCausalLM

    paths = make_inputs(tmp_path / "in")
    mp.spawn(_lora_worker, args=(_free_port(), str(tmp_path), paths), nprocs=WORLD, join=True)
    r0, r1 = (torch.load(tmp_path / f"lora{r}.pt") for r in range(WORLD))
    assert [r["loss"] for r in r0["rows"]] == [r["loss"] for r in r1["rows"]]
    assert all(math.isfinite(r["loss"]) for r in r0["rows"]) and len(r0["rows"]) == 4
    assert r0["merged"].keys() == r1["merged"].keys()
    for k, v in r0["merged"].items():
        assert torch.equal(v, r1["merged"][k]), k
    from neurovfm.jepa.checkpoint import load as load_checkpoint
    from neurovfm.reportgen.train import CHECKPOINT

    adapters = {
        k: v for k, v in load_checkpoint(tmp_path / "dist" / CHECKPOINT)["lm_trainable"].items() if "lora_" in k
    }
    assert adapters and all(k.split(".lora_")[0].endswith(("q_proj", "k_proj", "v_proj", "o_proj")) for k in adapters)
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in adapters.items()), "adapters did not train"
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "dist" / "lm", local_files_only=True)
    assert not any("lora_" in n for n, _ in exported.named_parameters())
    merged = {k.removeprefix("base_model.model."): v for k, v in r0["merged"].items()}  # the peft wrapper's names
    for k, v in exported.state_dict().items():
        torch.testing.assert_close(v, merged[k], msg=k)
    resumed = _trainer(_lora_config(tmp_path), paths, tmp_path / "dist")
    resumed.run()
    assert [r["loss"] for r in resumed.rows] == [r["loss"] for r in r0["rows"]]


def test_pipeline_launches_torchrun(tmp_path, monkeypatch):
    import yaml

    from neurovfm import pipeline

    launched = []
    monkeypatch.setattr(pipeline, "_relay", lambda cmd, what: launched.append(cmd))
    cfg = tiny_config(tmp_path)
    out = tmp_path / "rg" / "n8"
    pipeline.reportgen_train(cfg, "8", "feat.json", "f.jsonl", "ct.csv", "mri.csv", "r.jsonl", out, gpus=4)
    (cmd,) = launched
    assert cmd[:4] == ["torchrun", "--standalone", "--nproc_per_node=4", "-m"]
    assert cmd[4:7] == ["neurovfm.cli", "reportgen", "train"]
    assert cmd[cmd.index("--size") + 1] == "8" and cmd[cmd.index("--out") + 1] == str(out)
    assert yaml.safe_load((out / "run_config.yaml").read_text()) == cfg
    from neurovfm.cli import build_parser

    args = build_parser().parse_args(cmd[5:])
    assert args.func.__name__ == "_cmd_reportgen_train" and args.size == 8 and args.features == "feat.json"
