"""De-identification: keyed hashes for identifiers, age capping.

Identifiers (patient, study, series, file) become HMAC-SHA256 digests under a secret key, so the same
patient gets the same hash in every table of a run, nobody without the key can recompute the
mapping from a known MRN, and re-running with the same key is reproducible. The key never reaches
``results/``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

HASH_HEX_CHARS = 20  # 80 bits: collision-free in practice for 10^8 identifiers


class MissingKeyError(RuntimeError):
    """No de-identification key is configured for this run."""

    reason = "missing_key"  # neurovfm.utils.failure code


def resolve_key(deid_cfg: dict, run: str) -> bytes:
    """The hashing key: environment variable, else key file, else the demo key (demo run only)."""
    env = deid_cfg.get("key_env")
    if env and os.environ.get(env):
        return os.environ[env].encode()
    key_file = deid_cfg.get("key_file")
    if key_file:
        path = Path(key_file)
        if not path.is_file():
            raise MissingKeyError(f"deid.key_file {key_file!r} does not exist")
        key = path.read_bytes().strip()
        if not key:
            raise MissingKeyError(f"deid.key_file {key_file!r} is empty")
        return key
    if run == "demo" and deid_cfg.get("demo_key"):
        return deid_cfg["demo_key"].encode()
    raise MissingKeyError(
        f"no de-identification key: set the environment variable {env!r} or deid.key_file "
        f"(the demo key is only accepted for run: demo)"
    )


def keyed_hash(value: str, key: bytes, kind: str) -> str:
    """Stable pseudonym of ``value``; ``kind`` (patient/study/series/file) separates the namespaces."""
    msg = f"{kind}\x1f{value}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:HASH_HEX_CHARS]


def cap_age(age: float | None, cap: int = 90) -> float | None:
    if age is None:
        return None
    return float(min(age, cap))
