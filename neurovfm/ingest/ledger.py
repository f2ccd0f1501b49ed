"""The exclusion ledger: every file that does not end up in an included volume is counted here once.

Rows: ``unit`` (file | series | study), ``file_id`` / ``series_id`` / ``study_id`` (keyed hashes,
empty where unknown), ``n_files``, ``reason`` (a code of :mod:`neurovfm.utils.failure`), ``detail`` (PHI-free text), ``stage``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from neurovfm.utils.failure import check, is_transient

COLUMNS = ["unit", "file_id", "series_id", "study_id", "n_files", "reason", "detail", "stage"]
UNITS = ("file", "series", "study")


@dataclass
class Ledger:
    stage: str = "ingest"
    rows: list[dict] = field(default_factory=list)

    def add(
        self,
        unit: str,
        reason: str,
        n_files: int,
        detail: str = "",
        file_id: str = "",
        series_id: str = "",
        study_id: str = "",
    ) -> None:
        if unit not in UNITS:
            raise ValueError(f"ledger unit must be one of {UNITS}, got {unit!r}")
        if n_files < 0:
            raise ValueError("ledger n_files must be >= 0")
        check(reason)  # the closed vocabulary of neurovfm.utils.failure: nothing else reaches results/
        self.rows.append(
            {
                "unit": unit,
                "file_id": file_id,
                "series_id": series_id,
                "study_id": study_id,
                "n_files": int(n_files),
                "reason": reason,
                "detail": detail,
                "stage": self.stage,
            }
        )

    @property
    def n_files(self) -> int:
        return sum(r["n_files"] for r in self.rows)

    @property
    def n_transient(self) -> int:
        """Files excluded for a transient reason (the file system): a rerun of ingest retries them."""
        return sum(r["n_files"] for r in self.rows if is_transient(r["reason"]))

    def files_by_reason(self) -> dict[str, int]:
        c: Counter = Counter()
        for r in self.rows:
            c[r["reason"]] += r["n_files"]
        return dict(sorted(c.items()))

    def units_by_reason(self) -> dict[str, dict[str, int]]:
        out: dict[str, Counter] = {}
        for r in self.rows:
            out.setdefault(r["reason"], Counter())[r["unit"]] += 1
        return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows, columns=COLUMNS)
        return df.sort_values(["unit", "reason", "study_id", "series_id", "file_id"], kind="stable", ignore_index=True)
