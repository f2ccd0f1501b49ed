"""A fingerprint of the synthetic health system's generator code.

The `synth` rule passes it as a parameter, so that Snakemake (rerun trigger ``params``) writes the export again
when the generator changes: an export left from older generator code would otherwise stay in place while the
analyses that rebuild its patients from the same seed (``neurovfm.analysis.synth_patients``) run the new code, and
refuse the mismatch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

SYNTH_DIR = Path(__file__).resolve().parent


def generator_fingerprint(folder: Path = SYNTH_DIR) -> str:
    """SHA-256 (first 16 hex digits) over the names and contents of the generator's Python files."""
    h = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        h.update(path.name.encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]
