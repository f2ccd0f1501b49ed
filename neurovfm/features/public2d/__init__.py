"""Public 2D encoders (DINOv3 ViT-B/16, BiomedCLIP's ViT-B/16 image tower) for slice-wise features.

- :mod:`.loaders`: a section of the ``encoders`` configuration -> a frozen slice encoder, from a local Hugging Face
  or open_clip folder (strict loading, nothing downloads) or, with ``path: null``, random weights.
- :mod:`.vit`: BiomedCLIP's image tower (timm's ViT layout, open_clip's projection head).
- :mod:`.slices`: slice selection and each encoder's image preprocessing.

The extraction loop that writes them to the feature store is :mod:`neurovfm.features.slicewise`.
"""
