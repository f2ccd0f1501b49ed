"""neurovfm: a runnable reproduction of the NeuroVFM paper as a Snakemake workflow."""

import os

# Bitwise-reproducible CPU runs at a fixed thread count: MKL and OpenMP may otherwise use fewer threads than asked
# when the machine is busy, which changes how sums are split and so the last bits of every result. Set before
# torch or numpy load their BLAS (importing neurovfm first is enough); an explicit setting by the user wins.
os.environ.setdefault("MKL_DYNAMIC", "FALSE")
os.environ.setdefault("OMP_DYNAMIC", "FALSE")

__version__ = "0.1.0"
