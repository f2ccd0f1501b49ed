"""VideoMAE-3D, the reconstruction baseline of the paper's encoder comparison (Methods; Extended Data Fig. 6d),
trained on the same shards, crops and packed batches as Vol-JEPA: tube or block masking of 85% of each crop's
foreground tokens (``masking``), the same ViT encoder on the visible tokens, a light transformer decoder
(``decoder``, ``model``), per-patch normalised pixel targets and MSE on the masked tokens (``loss``), and the
Vol-JEPA trainer's loop, checkpoints and metrics with this objective (``train``)."""
