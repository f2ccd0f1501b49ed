"""Frozen feature extraction: every volume of every split encoded once by a frozen encoder, foreground tokens
kept with their 3D token coordinates, in a chunked float16 store that probes read one study at a time.

- :mod:`.encoders`: which encoder (a pretrained model's ``encoder.pt``, or ``random``: the same architecture with
  seeded random weights).
- :mod:`.extract`: the loop (packed batches up to a token budget, bf16 autocast on CUDA, fp32 on CPU).
- :mod:`.store`: the feature store (chunk ``.bin`` + ``.coords.bin`` + sidecar, ``index.json`` written last).
"""
