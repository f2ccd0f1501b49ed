"""HLIP, the language-supervised baseline of the paper's encoder comparison (Methods: "we trained HLIP ... on our
study-report pairs ... minibatches were balanced across MRI and CT studies, and the CLIP objective was computed
within each modality"), trained on the train split's study-report pairs: balanced CT / MRI study batches
(``stream``, ``collate``), the Vol-JEPA ViT with a study-level attention pool and a text encoder trained from
scratch or loaded from a local folder (``text``, ``model``), the per-modality CLIP loss (``loss``), and the
Vol-JEPA trainer's loop, checkpoints and metrics with this objective (``train``)."""
