"""Run one step (a workflow rule's script or a CLI command) so that any failure ends as one line.

The step's log (``results/{run}/logs/{rule}.log``) gets the reason code and PHI-free detail only
(:func:`neurovfm.utils.failure.describe`); the raw message and traceback go to
``private/{run}/errors/{stage}.log``; stderr gets one line (for errors in what the user gave, the
message names the path or column they gave, since stderr is their own terminal or job log, never
``results/``). No traceback is printed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

from neurovfm.utils.failure import describe, keep_raw
from neurovfm.utils.progress import setup_logging

log = logging.getLogger("neurovfm")

EXIT_FAILED = 1  # the step failed (data, file system, unexpected)
EXIT_USER = 2  # the user's configuration or inputs are wrong (Failed with a user reason)
USER_REASONS = {
    "invalid_config",
    "bad_input_path",
    "missing_column",
    "empty_export",
    "no_includable_series",
    "missing_key",
}


def private_root(cfg: dict | None) -> Path | None:
    """``private/{run}`` of ``cfg`` (environment variables expanded), or None."""
    if not cfg:
        return None
    try:
        return Path(os.path.expandvars(str(cfg["paths"]["private"]))) / str(cfg["run"])
    except (KeyError, TypeError):
        return None


def report(stage: str, exc: BaseException, cfg: dict | None) -> int:
    """Log and print ``exc`` as described above; returns the exit status."""
    failure = describe(exc)
    raw = keep_raw(private_root(cfg), stage, exc)
    log.error("%s failed: %s%s", stage, failure.line(), " (transient: a rerun retries it)" if failure.transient else "")
    if failure.reason in USER_REASONS:
        print(f"neurovfm {stage}: {getattr(exc, 'private', None) or exc}", file=sys.stderr)
        return EXIT_USER
    where = f"; the full message is in {raw}" if raw else ""
    print(f"neurovfm {stage}: failed: {failure.line()}{where}", file=sys.stderr)
    return EXIT_FAILED


@contextlib.contextmanager
def step(stage: str, cfg: dict | None, log_file: str | None = None):
    """Log to ``log_file`` (and stderr); any failure inside the block is reported as above and exits."""
    setup_logging(log_file)
    try:
        yield
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:  # every failure of a step ends here, whatever its type
        sys.exit(report(stage, exc, cfg))


def snakemake_step(smk):
    """:func:`step` for a workflow script: the rule's name, config and ``log:`` file."""
    return step(smk.rule, smk.config, smk.log[0] if len(smk.log) else None)
