"""An auxiliary diagnosis loss on the connector's visual tokens (a training aid; off in the paper profile).

With a few hundred study-report pairs, the answer's token loss sends almost no gradient into the connector (measured
on the demo: gradient norm 0.05 into the connector against 1.02 into the LM), so the resampler never learns which
tokens matter and the LM learns to answer from the indication alone. ``stage*.label_loss_weight`` > 0 adds, per
study, a class-weighted binary cross-entropy of the study's report-derived labels (``labels/{ct,mri}.csv``, train
split only) predicted from the mean of its visual tokens by one linear layer per modality. The head is trained with
the connector, kept in the resume checkpoint, and never exported: generation reads the connector and LM only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn


def uses_label_loss(rg: dict) -> bool:
    """Whether a stage of the ``reportgen`` config weights the auxiliary label loss."""
    return any(float(rg[f"stage{k}"]["label_loss_weight"]) > 0 for k in (1, 2))


def label_targets(ct_csv, mri_csv, study_ids) -> tuple[dict[str, tuple[str, np.ndarray]], dict[str, list[str]]]:
    """({study_id: (modality, 0/1 vector over that modality's classes)}, {modality: class names}) of ``study_ids``
    found in the label tables; a study without a label row is left out (it gets no auxiliary loss)."""
    targets, names = {}, {}
    wanted = set(study_ids)
    for path, modality in ((ct_csv, "CT"), (mri_csv, "MR")):
        df = pd.read_csv(path, dtype={"study_id": str}).set_index("study_id")
        df = df.drop(columns=[c for c in ("split",) if c in df.columns])
        names[modality] = list(df.columns)
        rows = df.loc[df.index.intersection(sorted(wanted))]
        for sid, row in rows.iterrows():
            targets[sid] = (modality, row.to_numpy(dtype=np.float32))
    return targets, names


def balanced_pos_weight(targets: dict, names: dict, max_weight: float = 100.0) -> dict[str, torch.Tensor]:
    """Per modality and class: n_negative / n_positive over ``targets`` (1 for a class without positives), capped."""
    out = {}
    for modality, classes in names.items():
        y = np.array([v for m, v in targets.values() if m == modality], dtype=np.float64).reshape(-1, len(classes))
        n_pos = y.sum(axis=0)
        w = np.where(n_pos > 0, (len(y) - n_pos) / np.maximum(n_pos, 1), 1.0)
        out[modality] = torch.tensor(np.minimum(w, max_weight), dtype=torch.float32)
    return out


class LabelHead(nn.Module):
    """Per-modality linear classifiers over the mean of a study's visual tokens."""

    def __init__(self, llm_dim: int, names: dict[str, list[str]], pos_weight: dict[str, torch.Tensor]):
        super().__init__()
        self.heads = nn.ModuleDict({m: nn.Linear(llm_dim, len(c)) for m, c in names.items()})
        for m, w in pos_weight.items():
            self.register_buffer(f"pos_weight_{m}", w.clone())

    def forward(self, visual: list[torch.Tensor], modalities: list[str], targets: list[torch.Tensor]) -> torch.Tensor:
        """Mean over studies of each study's mean BCE over its modality's classes."""
        losses = []
        for vis, m, y in zip(visual, modalities, targets):
            logits = self.heads[m](vis.float().mean(dim=0))
            w = getattr(self, f"pos_weight_{m}")
            losses.append(nn.functional.binary_cross_entropy_with_logits(logits, y.to(logits.device), pos_weight=w))
        return torch.stack(losses).mean()
