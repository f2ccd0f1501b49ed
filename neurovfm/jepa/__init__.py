"""Vol-JEPA pretraining: foreground masks (``masking``), crop and orientation augmentation (``augment``),
packed batches (``collate``), the resumable data stream (``stream``), objective (``loss``), EMA teacher
(``ema``), schedules, checkpoints, metrics, and the DDP training loop (``train``; launched by ``launch``)."""
