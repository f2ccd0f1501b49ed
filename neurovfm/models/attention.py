"""Multi-head self-attention over packed variable-length sequences.

Every sequence (one volume) attends only to itself. Four interchangeable back ends compute the same thing:

| name          | where                   | how                                                            |
|---------------|-------------------------|----------------------------------------------------------------|
| ``flash_attn``   | CUDA, fp16/bf16      | ``flash_attn.flash_attn_varlen_func`` (optional ``gpu`` extra)  |
| ``torch_varlen`` | CUDA, fp16/bf16      | PyTorch's ``torch.nn.attention.varlen.varlen_attn`` when present |
| ``sdpa_masked``  | any                  | one SDPA call with a block-diagonal boolean mask (memory N^2)   |
| ``sdpa_loop``    | any                  | one SDPA call per sequence (memory max L^2, a Python loop)      |

With ``backend=None`` the first usable one in that order is chosen for the given tensors; between the two
SDPA forms, ``sdpa_masked`` is used while the pack holds at most ``masked_max_tokens`` tokens.
Naming a back end that cannot run on the given tensors raises instead of falling back.
"""

from __future__ import annotations

import functools
import importlib
import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .packing import block_diag_mask, seqlens

BACKENDS = ("flash_attn", "torch_varlen", "sdpa_masked", "sdpa_loop")
# Largest pack (tokens) for which sdpa_masked is chosen automatically: one N x N block-diagonal mask costs
# O(N^2) over the whole pack, the per-volume loop O(sum n_i^2); the loop wins beyond a few hundred tokens
# on CPU (measured: 2.2x faster for a tiny-ViT Vol-JEPA step of 2,800 tokens in 8 volumes).
MASKED_MAX_TOKENS = 512
_HALF = (torch.float16, torch.bfloat16)


@functools.cache
def _flash_attn_varlen():
    """flash_attn's varlen kernel, or None when the package is not installed."""
    try:
        module = importlib.import_module("flash_attn")
    except ImportError:
        return None
    return getattr(module, "flash_attn_varlen_func", None)


@functools.cache
def _torch_varlen():
    """PyTorch's native varlen attention (torch >= 2.10), or None when this build lacks it."""
    try:
        module = importlib.import_module("torch.nn.attention.varlen")
    except ImportError:
        return None
    return getattr(module, "varlen_attn", None)


def _unusable_reason(backend: str, device: torch.device | None, dtype: torch.dtype | None) -> str | None:
    """Why ``backend`` cannot run on tensors of this device/dtype (None = it can). None args = any."""
    if backend not in BACKENDS:
        return f"unknown attention backend {backend!r}; choose one of {BACKENDS}"
    if backend in ("sdpa_masked", "sdpa_loop"):
        return None
    if backend == "flash_attn" and _flash_attn_varlen() is None:
        return "flash_attn is not installed (pip install 'neurovfm[gpu]' on a CUDA machine)"
    if backend == "torch_varlen" and _torch_varlen() is None:
        return f"torch {torch.__version__} has no torch.nn.attention.varlen.varlen_attn"
    if not torch.cuda.is_available():
        return f"{backend} needs CUDA and none is available"
    if device is not None and device.type != "cuda":
        return f"{backend} needs CUDA tensors, got {device.type}"
    if dtype is not None and dtype not in _HALF:
        return f"{backend} needs float16 or bfloat16 inputs, got {dtype} (use autocast)"
    return None


def available_backends(device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> list[str]:
    """Back ends usable here; with ``device``/``dtype``, those usable for such tensors."""
    device = torch.device(device) if device is not None else None
    return [b for b in BACKENDS if _unusable_reason(b, device, dtype) is None]


def choose_backend(q: Tensor, masked_max_tokens: int = MASKED_MAX_TOKENS) -> str:
    """The back end ``varlen_attention(..., backend=None)`` uses for ``q``."""
    if q.device.type == "cuda":  # only then look for the varlen kernels (importing torch's loads torch._dynamo, ~1.5 s)
        for backend in ("flash_attn", "torch_varlen"):
            if _unusable_reason(backend, q.device, q.dtype) is None:
                return backend
    return "sdpa_masked" if q.shape[0] <= masked_max_tokens else "sdpa_loop"


def _sdpa_run(q: Tensor, k: Tensor, v: Tensor, n: int) -> Tensor:
    """Attention within each of G consecutive sequences of ``n`` tokens: [G * n, H, Dh] -> [G * n, H, Dh], through one
    [G, H, n, Dh] call (each sequence's result bit for bit that of a call of its own, tested)."""
    if n == 0:  # empty sequences: nothing to attend
        return q
    g, heads, dh = q.shape[0] // n, q.shape[1], q.shape[2]

    def batched(t: Tensor) -> Tensor:
        return t.view(g, n, heads, dh).transpose(1, 2)

    out = F.scaled_dot_product_attention(batched(q), batched(k), batched(v))
    return out.transpose(1, 2).reshape(g * n, heads, dh)


def equal_length_runs(lengths: list[int]) -> list[tuple[int, int]]:
    """(length, count) of each run of consecutive sequences of one length, in order."""
    return [(n, len(list(run))) for n, run in itertools.groupby(lengths)]


def varlen_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    cu_seqlens: Tensor,
    max_seqlen: int,
    backend: str | None = None,
    masked_max_tokens: int = MASKED_MAX_TOKENS,
) -> Tensor:
    """Softmax attention within each packed sequence: q, k, v [N, H, Dh] -> [N, H, Dh].

    Scale 1/sqrt(Dh), no dropout, not causal. ``cu_seqlens`` int32 [B+1]; ``max_seqlen`` its longest length.
    """
    if q.ndim != 3 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(
            f"q, k, v must share one [N, H, Dh] shape, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if backend is None:
        backend = choose_backend(q, masked_max_tokens)
    else:
        reason = _unusable_reason(backend, q.device, q.dtype)
        if reason is not None:
            raise RuntimeError(f"attention backend {backend!r} is unavailable: {reason}")
    cu = cu_seqlens.to(device=q.device, dtype=torch.int32)
    if backend == "flash_attn":
        return _flash_attn_varlen()(q, k, v, cu, cu, max_seqlen, max_seqlen, dropout_p=0.0, causal=False)
    if backend == "torch_varlen":
        return _torch_varlen()(q, k, v, cu, cu, max_seqlen, max_seqlen)
    if backend == "sdpa_masked":
        mask = block_diag_mask(cu)
        out = F.scaled_dot_product_attention(
            q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None], attn_mask=mask
        )
        return out[0].transpose(0, 1)
    # one split per tensor, not a slice per volume: a slice's backward writes a zero tensor of the whole pack, so
    # B volumes cost B whole-pack copies (HLIP's 64-volume packs: a sixth of its step); split's backward is one cat.
    # [G, H, n, Dh]: with a batch axis torch picks its fused (flash) CPU kernel; a 3D [H, n, Dh] call takes the
    # unfused math path, 6x slower forward and 3.6x forward + backward at 1,500-3,000 tokens
    # (benchmarks/attention_cpu.py). Consecutive sequences of one length share a call (HLIP's volumes, cut to
    # max_tokens each): one call per run instead of one per sequence (benchmarks/attention_runs.py)
    runs = equal_length_runs(seqlens(cu).tolist())
    sizes = [n * g for n, g in runs]
    outs = [_sdpa_run(a, b, c, n) for (n, _), a, b, c in zip(runs, q.split(sizes), k.split(sizes), v.split(sizes))]
    return torch.cat(outs, 0)


class Attention(nn.Module):
    """Multi-head self-attention on packed tokens: x [N, D] -> [N, D]."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_backend: str | None = None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_backend = attn_backend
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, cu_seqlens: Tensor, max_seqlen: int) -> Tensor:
        n, d = x.shape
        q, k, v = self.qkv(x).reshape(n, 3, self.num_heads, self.head_dim).unbind(1)
        out = varlen_attention(q, k, v, cu_seqlens, max_seqlen, backend=self.attn_backend)
        return self.proj(out.reshape(n, d))
