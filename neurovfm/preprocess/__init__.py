"""Series preprocessing: canonical orientation, 1 x 1 x 4 mm resampling, CT windows / MRI percentile
scaling, 8- and 4-bit quantisation, air-only foreground and per-token masks, written to memory-mapped
shards by :mod:`neurovfm.preprocess.run`."""
