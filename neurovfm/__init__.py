"""neurovfm: a runnable reproduction of the NeuroVFM paper as a Snakemake workflow."""

import os

# Bitwise-reproducible CPU runs at a fixed thread count: MKL and OpenMP may otherwise use fewer threads than asked
# when the machine is busy, which changes how sums are split and so the last bits of every result. Set before
# torch or numpy load their BLAS (importing neurovfm first is enough); an explicit setting by the user wins.
os.environ.setdefault("MKL_DYNAMIC", "FALSE")
os.environ.setdefault("OMP_DYNAMIC", "FALSE")
# MKL's strict conditional numerical reproducibility: the same bits whatever the thread count or memory alignment
# (so a rule's `threads` does not change its results; no cost measured on the demo's feature extraction).
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__version__ = "0.1.0"
