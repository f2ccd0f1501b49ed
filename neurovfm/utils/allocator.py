"""Keep freed memory in the process: fewer page faults for jobs that allocate and free large arrays all the time.

The synthetic export builds and drops arrays of tens of megabytes for every study (tissue maps, displacement
fields, rendered series). By default glibc serves such blocks with ``mmap`` and returns them to the kernel when
they are freed, and numpy asks the kernel for transparent huge pages for arrays of 4 MB or more
(``madvise(MADV_HUGEPAGE)``), which on kernels with THP defrag set to ``madvise`` (Debian's and Ubuntu's default)
can compact memory on the faulting thread. Every new array then costs page faults again, and in a virtual machine
a fault is expensive: the export spent a ninth of its CPU time in the kernel (``benchmarks/synth_allocator.py``:
kernel time 0.48x, wall time 0.90x with this setting on 2 cores). :func:`keep_freed_memory` serves large blocks from the heap and keeps
freed heap memory for the next array (glibc's ``mallopt``), and turns numpy's huge-page advice off. The values
computed do not change; the process's resident memory stays at its peak instead of shrinking after a peak.

Only glibc has ``mallopt``; elsewhere (macOS, musl) the call logs what it could not do and changes nothing else.
Settings last for the process and the processes it forks afterwards.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("neurovfm")

M_TRIM_THRESHOLD = -1  # glibc malloc.h: bytes of free memory at the heap's top before it is returned
M_MMAP_MAX = -4  # glibc malloc.h: how many blocks may be served by mmap at once (0: none)


def _numpy_hugepage(enabled: bool) -> bool | None:
    """Set numpy's huge-page advice for large arrays; returns the former setting (None: this numpy has none)."""
    import numpy as np

    # numpy's own switch (private; the one NUMPY_MADVISE_HUGEPAGE sets at import): numpy 2 in _core, 1.x in core
    core = getattr(np, "_core", None) or getattr(np, "core", None)
    setter = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    return None if setter is None else bool(setter(enabled))


def keep_freed_memory(trim_threshold_mb: int = 1024) -> dict:
    """Serve large allocations from the heap and keep up to ``trim_threshold_mb`` of freed memory at its top;
    no huge-page advice from numpy. Returns what was set: {"numpy_hugepage_was": bool | None, "mallopt": bool}."""
    if trim_threshold_mb < 0:
        raise ValueError(f"trim_threshold_mb must be >= 0, got {trim_threshold_mb}")
    done = {"numpy_hugepage_was": _numpy_hugepage(False), "mallopt": False}
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        log.info("memory: no glibc mallopt here (%s); freed memory goes back to the system as usual", name)
        return done
    trim = min(int(trim_threshold_mb) * 2**20, 2**31 - 1)  # mallopt takes a C int
    done["mallopt"] = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, trim))
    if not done["mallopt"]:
        log.warning("memory: glibc refused mallopt(M_MMAP_MAX, 0) / mallopt(M_TRIM_THRESHOLD, %d)", trim)
    return done
