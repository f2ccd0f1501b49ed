"""neurovfm.utils.allocator: freed memory is reused without new page faults (glibc), numpy's huge-page advice off.

Each case runs in a fresh interpreter (the settings last for the process). The measure is the minor page faults
of allocating and filling a 64 MB array a second time after freeing the first. Positive control: the same with
only numpy's advice turned off (glibc's defaults) faults on every page again.
"""

from __future__ import annotations

import ctypes.util
import json
import subprocess
import sys

import pytest

from neurovfm.utils.allocator import keep_freed_memory

SCRIPT = """
import json, resource, sys
import numpy as np
from neurovfm.utils import allocator
if sys.argv[1] == "keep":
    done = allocator.keep_freed_memory(256)
else:
    done = {"numpy_hugepage_was": allocator._numpy_hugepage(False), "mallopt": False}
a = np.ones(64 * 2**20, np.uint8); del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
a = np.ones(64 * 2**20, np.uint8); del a
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"faults": faults, "done": done, "hugepage_now": allocator._numpy_hugepage(False)}))
"""

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not ctypes.util.find_library("c"), reason="glibc's mallopt (Linux)"
)


def _run(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc
def test_freed_memory_is_reused_without_page_faults():
    kept, default = _run("keep"), _run("default")
    pages = 64 * 2**20 // 4096
    assert kept["done"]["mallopt"] is True
    assert kept["hugepage_now"] is False  # numpy's advice is off after the call
    assert kept["faults"] < pages // 20  # the second array reuses the first one's pages
    assert default["faults"] > pages // 2  # positive control: glibc's defaults fault every page again


def test_negative_threshold_is_refused():
    with pytest.raises(ValueError, match="trim_threshold_mb"):
        keep_freed_memory(-1)


def test_schema_refuses_a_negative_setting(tmp_path):
    from neurovfm.config import load_config

    bad = tmp_path / "bad.yaml"
    bad.write_text("synth: {keep_freed_memory_mb: -5}\n")
    with pytest.raises(Exception, match="keep_freed_memory_mb"):
        load_config(bad)
