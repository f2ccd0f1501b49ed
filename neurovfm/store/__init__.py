"""Sharded memory-mapped volume store: JSON index (:mod:`index`), atomic shard writing (:mod:`writer`),
lazy zero-copy reading (:mod:`reader`), torch Dataset (:mod:`dataset`), study-aware sampler
(:mod:`sampler`) and train-set intensity statistics (:mod:`stats`)."""
