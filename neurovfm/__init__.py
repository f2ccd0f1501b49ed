"""neurovfm: a runnable reproduction of the NeuroVFM paper as a Snakemake workflow."""

__version__ = "0.1.0"
