"""Multi-process training of the report generator (one rank per GPU under ``torchrun``).

:class:`LlavaStep` computes the training loss (connector -> image slots -> LLM) inside one module, so that the
wrappers see every parameter use. ``fsdp``: FSDP2 ``fully_shard`` on each decoder layer of the LLM (the classes of
its ``_no_split_modules``), then on the step module, which shards the rest (embeddings, final norm, head and the
connector); bf16 parameters with fp32 gradient reduction on CUDA, fp32 on the CPU. ``ddp``: the step module
replicated with DDP. Each rank trains on its slice of the global batch; checkpoints hold full (gathered) tensors in
the single-process format.
"""

from __future__ import annotations

import hashlib

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

from .connector import inputs_embeds

STRATEGIES = ("fsdp", "ddp")


class LlavaStep(nn.Module):
    """Loss of a batch: the connector's latents fill the image slots of the LLM's input embeddings."""

    def __init__(self, connector: nn.Module, lm: nn.Module, image_id: int, label_head: nn.Module | None = None):
        super().__init__()
        self.connector, self.lm, self.image_id = connector, lm, image_id
        self.label_head = label_head  # optional auxiliary diagnosis loss (neurovfm.reportgen.label_head)

    def forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        labels: torch.Tensor,
        series: list[list[torch.Tensor]],
        num_items: torch.Tensor | None = None,
        aux: tuple | None = None,
    ) -> torch.Tensor:
        """Mean token loss of the batch; with ``num_items`` (target tokens of the whole accumulated batch) the
        summed token loss divided by it, so that micro-batch losses add up to the whole batch's mean. ``aux``:
        (modalities, label vectors, scale) of these studies: ``scale`` x the label head's loss is added."""
        visual = [self.connector(s) for s in series]
        embeds = inputs_embeds(self.lm.get_input_embeddings(), ids, self.image_id, visual)
        extra = {} if num_items is None else {"num_items_in_batch": num_items}
        loss = self.lm(inputs_embeds=embeds, attention_mask=mask, labels=labels, **extra).loss
        if aux is not None:
            modalities, targets, scale = aux
            loss = loss + scale * self.label_head(visual, modalities, targets)
        return loss


def gradient_sync(step: nn.Module, enabled: bool):
    """Context for one micro-batch's backward: gradients are reduced across ranks only when ``enabled`` (the
    last micro-batch of an optimiser step). DDP: ``no_sync``; FSDP2: ``set_requires_gradient_sync``."""
    from contextlib import contextmanager, nullcontext

    if hasattr(step, "no_sync"):
        return nullcontext() if enabled else step.no_sync()
    if hasattr(step, "set_requires_gradient_sync"):

        @contextmanager
        def fsdp_sync():
            step.set_requires_gradient_sync(enabled)
            try:
                yield
            finally:
                step.set_requires_gradient_sync(True)

        return fsdp_sync()
    return nullcontext()


def decoder_layers(lm: nn.Module) -> list[nn.Module]:
    """The LLM's blocks that are sharded one by one (Hugging Face ``_no_split_modules``)."""
    names = set(getattr(lm, "_no_split_modules", None) or [])
    layers = [m for m in lm.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"{type(lm).__name__} names no decoder layer class (_no_split_modules); cannot shard it")
    return layers


def wrap(step: LlavaStep, strategy: str, device: torch.device, bf16: bool) -> nn.Module:
    """``step`` sharded (fsdp) or replicated (ddp) over the default process group."""
    if strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = (
            MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
            if bf16 and device.type == "cuda"
            else MixedPrecisionPolicy()
        )
        for layer in decoder_layers(step.lm):
            fully_shard(layer, mp_policy=mp)
        return fully_shard(step.to(device), mp_policy=mp)
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        step = step.to(device)
        return DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None)
    raise ValueError(f"unknown reportgen.distributed.strategy {strategy!r} (one of {STRATEGIES})")


def rank_items(items: list, rank: int, world: int) -> list:
    """This rank's share of a global batch: every ``world``-th item from position ``rank``."""
    if len(items) < world:
        raise ValueError(
            f"a batch of {len(items)} items cannot be split over {world} processes; "
            f"raise reportgen.stage*.batch_size to at least {world}"
        )
    return items[rank::world]


def full(value):
    """The whole tensor of a (possibly sharded) value on the CPU; a collective for a DTensor."""
    if isinstance(value, DTensor):
        value = value.full_tensor()
    return value.detach().cpu().clone() if torch.is_tensor(value) else value


def full_state(state: dict) -> dict:
    """``state`` (a state dict) with every tensor gathered; every rank must call it in the same order."""
    return {k: full(v) for k, v in state.items()}


def full_optimizer_state(state: dict) -> dict:
    """An optimiser's ``state_dict()`` with sharded moments gathered (the single-process layout)."""
    return {"state": {i: full_state(s) for i, s in state["state"].items()}, "param_groups": state["param_groups"]}


def shard_like(param: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value`` (a full tensor) laid out as ``param``: this rank's shard for a DTensor, else as is."""
    if isinstance(param, DTensor) and tuple(value.shape) == tuple(param.shape):
        return distribute_tensor(value.to(param.device, param.dtype), param.device_mesh, param.placements)
    return value


def load_full(module: nn.Module, state: dict) -> None:
    """Copy full tensors into the (possibly sharded) parameters named in ``state``; names must exist."""
    params = dict(module.named_parameters())
    unknown = sorted(set(state) - set(params))
    if unknown:
        raise ValueError(f"checkpoint names parameters the model lacks: {unknown[:3]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(shard_like(params[name], value))


def shard_optimizer_state(state: dict, params: list[torch.Tensor]) -> dict:
    """A gathered optimiser state dict laid out for ``params`` (the optimiser's parameters, in order)."""
    return {
        "state": {
            i: {k: shard_like(params[i], v) if torch.is_tensor(v) else v for k, v in s.items()}
            for i, s in state["state"].items()
        },
        "param_groups": state["param_groups"],
    }


def mean_over_ranks(value: torch.Tensor) -> float:
    out = value.detach().float().reshape(1).clone()
    dist.all_reduce(out)
    return float(out) / dist.get_world_size()


def check_same_tokenizer(tokenizer) -> None:
    """Every rank must have built the same vocabulary (the demo trains its tokenizer on each rank)."""
    digest = hashlib.sha256(repr(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()
    digests = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest)
    if len(set(digests)) != 1:
        raise RuntimeError("the ranks built different tokenizers; training cannot be sharded")
