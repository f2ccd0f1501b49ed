"""DINOv2 trained on 2D slices of the health system's volumes, the paper's 2D self-supervised baseline (Methods:
"DINOv2 model trained on 2D neuroimaging slices derived from UM-NeuroImages volumes"; Extended Data Fig. 6d):
foreground slices of the train split's shards cut into 2 global and a few local crops (``crops``, ``data``), iBOT
block masks on the global crops (``masking``), a 2D ViT student and its EMA teacher (``vit``) with a DINO head
(``head``), the DINO, iBOT and KoLeo losses with Sinkhorn-Knopp or centred teacher targets (``loss``), and the
Vol-JEPA trainer's loop, schedules, checkpoints and metrics with this objective (``train``). ``export`` loads the
exported student as a slice encoder for the slice-wise feature extractor (:mod:`neurovfm.features.slicewise`)."""
