"""Training metrics kept in memory and written (atomically, whole file) with every checkpoint, so the files
on disk always match the last checkpoint; a resumed run drops rows past the step it resumes from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from neurovfm.jepa.masking import MODE_NAMES
from neurovfm.jepa.monitors import MONITOR_COLUMNS
from neurovfm.utils.atomic import write_csv

STEP_COLUMNS = [
    "step",
    "loss",
    "lr",
    "wd",
    "momentum",
    "grad_norm",
    "tokens_per_s",
    "step_s",
    "n_volumes",
    "n_tokens",
    "context_fraction_MR",
    "context_fraction_CT",
    "teacher_spread",
    "teacher_erank",
    *MONITOR_COLUMNS,
]
SAMPLE_COLUMNS = ["step", "rank", "sample", "modality", "config", "n_foreground", "n_context", "context_fraction"]


def modality_means(modality: list[str], fraction: np.ndarray) -> dict:
    """Mean context fraction per modality of one batch (NaN when the batch has none of it)."""
    mod = np.asarray(modality)
    return {
        f"context_fraction_{m}": float(fraction[mod == m].mean()) if (mod == m).any() else float("nan")
        for m in ("MR", "CT")
    }


def sample_rows(step: int, rank: int, modality, mode, n_fg, n_ctx, names: dict = MODE_NAMES) -> list[dict]:
    """One row per sample; ``names`` maps the masking configuration ids to names."""
    return [
        {
            "step": step,
            "rank": rank,
            "sample": i,
            "modality": m,
            "config": names[int(c)],
            "n_foreground": int(f),
            "n_context": int(k),
            "context_fraction": float(k) / float(f),
        }
        for i, (m, c, f, k) in enumerate(zip(modality, mode, n_fg, n_ctx))
    ]


class MetricsLog:
    def __init__(self, out_dir: str | Path, step_columns: list[str] = STEP_COLUMNS):
        self.step_columns = list(step_columns)
        self.steps_path = Path(out_dir) / "metrics.csv"
        self.samples_path = Path(out_dir) / "context_fractions.csv"
        self.steps: list[dict] = []
        self.samples: list[dict] = []

    def resume(self, step: int) -> None:
        """Load rows written before ``step`` (the checkpoint's step) and forget the rest."""
        for path, rows in ((self.steps_path, self.steps), (self.samples_path, self.samples)):
            if path.is_file():
                frame = pd.read_csv(path)
                rows[:] = frame[frame["step"] < step].to_dict("records")

    def add_step(self, row: dict) -> None:
        self.steps.append(row)

    def add_samples(self, rows: list[dict]) -> None:
        self.samples.extend(rows)

    def write(self) -> None:
        write_csv(self.steps_path, pd.DataFrame(self.steps, columns=self.step_columns))
        write_csv(self.samples_path, pd.DataFrame(self.samples, columns=SAMPLE_COLUMNS))
