"""Figures: each writes ``<name>.png``, ``<name>.pdf`` and the table behind it, ``<name>.csv``, atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from neurovfm.utils.atomic import atomic_path, write_csv  # noqa: E402


def save_figure(fig, out_png: str | Path, table=None) -> None:
    """Write the PNG, a PDF beside it and, when given, the DataFrame behind it as CSV."""
    out_png = Path(out_png)
    for path, fmt in ((out_png, "png"), (out_png.with_suffix(".pdf"), "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
    plt.close(fig)
    if table is not None:
        write_csv(out_png.with_suffix(".csv"), table)
