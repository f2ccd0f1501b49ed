"""Render jobs of the embedded health system in worker processes, results in job order.

Each job draws from random streams of its own (seed and job index), so what the jobs write does not depend on the
number of workers. The template anatomy is derived and the sampling kernels are compiled once in the parent, and
forked workers inherit both instead of each spending about 10 s and 3 s; every worker computes on one thread, since
the pool already uses every core.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _call(args):
    fn, job = args
    return fn(*job)


def ordered_map(fn: Callable, jobs: Iterable[tuple], workers: int = 1) -> Iterator:
    """``fn(*job)`` for every job, yielded in job order: in this process when ``workers`` <= 1, else in ``workers``
    forked processes (``fn`` must be a module-level function)."""
    if workers <= 1:
        for job in jobs:
            yield fn(*job)
        return
    from neurovfm.synth.phantom import load_anatomy
    from neurovfm.synth.resample import compile_kernels

    load_anatomy()
    compile_kernels()
    with ProcessPoolExecutor(workers, initializer=_one_thread) as pool:
        yield from pool.map(_call, [(fn, job) for job in jobs], chunksize=1)
